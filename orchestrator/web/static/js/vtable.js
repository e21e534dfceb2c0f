// A table that puts only its visible rows in the DOM (plus a few either side): 10,000 runs
// cost a few dozen <tr>s. Rows have one fixed height; two spacer rows stand in for the rest,
// so the scroll bar and the sticky header behave as in a full table. A row whose data did not
// change keeps its <tr> (only decorated again): what a user is clicking is not replaced.
'use strict';

(function () {
  const Orch = window.Orch;
  const OVERSCAN = 8;

  class VTable {
    /** wrap: the scrolling element; table: the <table> inside it; columns: [{key, label,
     * title, sortable}]; cells(row, tr): makes one <tr>'s cells (once per row key and set
     * of columns); update(row, tr): sets its values when the row object changes;
     * decorate(row, tr): marks it (selection, best, live time) on every draw; keyOf(row): a
     * row's identity; onSort(key): a header was clicked. */
    constructor({ wrap, table, rowHeight, cells, update, decorate, keyOf, onSort }) {
      this.wrap = wrap;
      this.table = table;
      this.rowHeight = rowHeight;
      this.cells = cells;
      this.update = update;
      this.decorate = decorate || (() => {});
      this.keyOf = keyOf;
      this.onSort = onSort;
      this.drawn = new Map(); // key -> {row, tr} of the rows in the DOM
      this.rows = [];
      this.columns = [];
      this.sortKey = null;
      this.descending = false;
      this.thead = Orch.h('thead');
      this.tbody = Orch.h('tbody');
      table.append(this.thead, this.tbody);
      this.redraw = Orch.batched(() => this.render());
      wrap.addEventListener('scroll', this.redraw, { passive: true });
      if (window.ResizeObserver) new ResizeObserver(this.redraw).observe(wrap);
    }

    setColumns(columns) {
      const same = JSON.stringify(columns) === JSON.stringify(this.columns);
      this.columns = columns;
      if (!same) {
        this.drawn.clear(); // their cells no longer match the columns: made again
        this.renderHead();
      }
      this.redraw();
    }

    setSort(key, descending) {
      this.sortKey = key;
      this.descending = descending;
      this.renderHead();
    }

    setRows(rows) {
      this.rows = rows;
      this.redraw();
    }

    /** Set every drawn row's values again on the next draw (what they show changed). */
    forget() {
      for (const entry of this.drawn.values()) entry.row = null;
      this.redraw();
    }

    /** Scroll so that row number i (in the current order) is visible. */
    reveal(i) {
      const top = i * this.rowHeight;
      const view = this.wrap.clientHeight - this.thead.offsetHeight;
      if (top < this.wrap.scrollTop || top + this.rowHeight > this.wrap.scrollTop + view) {
        this.wrap.scrollTop = Math.max(0, top - view / 2);
      }
    }

    renderHead() {
      const tr = Orch.h('tr');
      for (const col of this.columns) {
        const sorted = this.sortKey === col.key;
        const th = Orch.h('th', {
          title: col.title || col.label,
          class: [col.cls || '', sorted ? (this.descending ? 'sorted desc' : 'sorted asc') : ''].join(' ').trim() || null,
        });
        if (col.sortable === false) {
          th.append(col.head || col.label);
        } else {
          th.dataset.key = col.key;
          th.append(col.label);
          th.addEventListener('click', () => this.onSort(col.key));
        }
        tr.append(th);
      }
      this.thead.replaceChildren(tr);
    }

    render() {
      const total = this.rows.length;
      const headHeight = this.thead.offsetHeight || this.rowHeight;
      const view = Math.max(this.rowHeight, this.wrap.clientHeight - headHeight);
      const top = Math.max(0, this.wrap.scrollTop);
      let first = Math.max(0, Math.floor(top / this.rowHeight) - OVERSCAN);
      let last = Math.min(total, Math.ceil((top + view) / this.rowHeight) + OVERSCAN);
      if (first > last) first = last;
      const span = this.columns.length || 1;
      const spacer = (height) => {
        const tr = Orch.h('tr.spacer', { 'aria-hidden': 'true' });
        const td = Orch.h('td', { colspan: String(span) });
        tr.style.height = `${height}px`;
        tr.append(td);
        return tr;
      };
      const fragment = document.createDocumentFragment();
      if (first > 0) fragment.append(spacer(first * this.rowHeight));
      const drawn = new Map();
      for (let i = first; i < last; i++) {
        const row = this.rows[i];
        const key = this.keyOf(row);
        const before = this.drawn.get(key);
        let tr;
        if (before) {
          tr = before.tr;
        } else {
          tr = document.createElement('tr');
          tr.style.height = `${this.rowHeight}px`;
          this.cells(row, tr);
        }
        if (!before || before.row !== row) this.update(row, tr);
        this.decorate(row, tr);
        drawn.set(key, { row, tr });
        fragment.append(tr);
      }
      this.drawn = drawn;
      if (last < total) fragment.append(spacer((total - last) * this.rowHeight));
      this.tbody.replaceChildren(fragment);
    }
  }

  Orch.VTable = VTable;
})();

// Start the tab's one event stream, then the page the path names (which subscribes to it).
'use strict';

(function () {
  const Orch = window.Orch;
  const page = Orch.page();
  for (const a of document.querySelectorAll('[data-nav]')) a.classList.toggle('current', a.dataset.nav === page.name);
  const root = document.getElementById('app');
  Orch.events.start();
  const badge = document.getElementById('status');
  if (badge && !Orch.offline) {
    badge.title = 'the live event stream (click to reconnect)';
    badge.addEventListener('click', () => {
      Orch.events.stop();
      Orch.events.start();
    });
  }
  Promise.resolve(Orch.pages[page.name](root, page)).catch((err) => {
    root.replaceChildren(Orch.h('p.error', { text: `This page failed: ${err.message}` }));
  });
})();

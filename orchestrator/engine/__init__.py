"""The run-state machine, events, the event bus and the sweep controller."""

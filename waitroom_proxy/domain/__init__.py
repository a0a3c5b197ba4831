"""Pure rules of the waiting room: no I/O, every function that needs time takes ``now``."""

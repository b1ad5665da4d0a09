"""The built-in tasks, one module per family of algorithm."""

from . import automata, counting, lookup, ordering

TASKS = counting.TASKS + lookup.TASKS + ordering.TASKS + automata.TASKS

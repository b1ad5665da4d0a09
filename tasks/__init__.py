"""Tasks: the program language, its interpreter, the task registry and hypothesis strategies.

>>> import tasks
>>> task = tasks.get("parity")
>>> tokens, targets = task.sample(4, seed=0)
>>> cf = task.counterfactual(tokens, tokens[::-1], "ones", 3)

``tasks.strategies`` (needs hypothesis) holds strategies for inputs, pairs and interventions.
"""

from .interpreter import counterfactual, run
from .program import Aggregate, Indices, Map, Program, Scan, Select, Sum, Tokens, ValueSet, Variable
from .registry import UnknownTaskError, get, names
from .task import BOS, IGNORE, SEQ2SEQ, TRANSDUCTION, Counterfactual, Sample, Task

__all__ = [
    "Aggregate", "BOS", "Counterfactual", "IGNORE", "Indices", "Map", "Program", "SEQ2SEQ", "Sample", "Scan",
    "Select", "Sum", "TRANSDUCTION", "Task", "Tokens", "UnknownTaskError", "ValueSet", "Variable",
    "counterfactual", "get", "names", "run",
]

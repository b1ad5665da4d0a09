"""(task, family) pairs a compiler must refuse, and a word the CompileError must contain.

One dict per family; the union is what tests/test_compiled.py expects.
"""

TRANSFORMER = {
    ("permutation", "transformer"): "Scan",
}
RNN: dict = {}
SSM = {
    ("permutation", "ssm"): "Scan",
}

REFUSED = {**TRANSFORMER, **RNN, **SSM}

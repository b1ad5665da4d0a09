"""(task, family) pairs a compiler must refuse, and a word the CompileError must contain.

One dict per family; the union is what tests/test_compiled.py expects.
"""

TRANSFORMER = {
    ("permutation", "transformer"): "Scan",
}
RNN: dict = {}  # the rnn compiler implements every primitive the catalog uses (Scan included): no refusals
SSM = {
    ("permutation", "ssm"): "Scan",  # S3 is non-abelian: a diagonal SSM with positive decays cannot track it
}

REFUSED = {**TRANSFORMER, **RNN, **SSM}

"""(task, family) pairs a compiler must refuse, and a word the CompileError must contain.

One dict per family; the union is what tests/test_compiled.py expects.
"""

TRANSFORMER: dict = {}  # Scan compiles as a parallel prefix (tasks/rewrite.py): no refusals
RNN: dict = {}  # the rnn compiler implements every primitive the catalog uses (Scan included): no refusals
SSM: dict = {}  # S3 too, as a parallel prefix over its monoid (convolution taps for the offsets): no refusals

REFUSED = {**TRANSFORMER, **RNN, **SSM}

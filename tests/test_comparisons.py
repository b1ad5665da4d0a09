"""Comparison selections ``Select.lt/le/gt/ge(key, query)``: the vectorised interpreter against the
plain-Python reference interpreter under interventions, a rank count against its definition,
and the compiled models of every family held to the acceptance checks of tests/test_compiled.py
(predictions, ground-truth patching, patching outside the ground truth; compiled and
reparametrised) at the catalogue length, for counting the selected positions (what rank-based
algorithms need) and for the other reductions where a family compiles them.
"""

from __future__ import annotations

import functools

import pytest
from hypothesis import HealthCheck, given, settings

import tasks
import zoo
from tasks import Aggregate, Map, Program, Select, Task, Tokens, strategies
from tasks.interpreter import counterfactual
from zoo import CompileError

from .reference_interpreter import evaluate
from .test_compiled import check_equals_program, check_ground_truth_patching, check_outside_ground_truth

COMPARISONS = ("lt", "le", "gt", "ge")
LETTERS = ("BOS", "a", "b", "c", "d", "e")  # ordered by token id
MAX_LEN = 16  # the catalogue's length
SOME = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# (family, reduction) pairs a family refuses over a comparison: count with a value needs an AND of
# two one-hots in one step (the transformer's attention value, the RNN's counter); the RNN has no
# per-key max/min; an SSM slot written once needs "nothing selected before", different per slot
REFUSED = {("transformer", "count_value"): "count", ("rnn", "count_value"): "count with a value",
           ("rnn", "max"): "max", ("rnn", "min"): "min", ("ssm", "first"): "first"}
REDUCTIONS = ("count", "count_value", "last", "first", "max", "min")


def _holds(kind: str, k: int, q: int) -> bool:
    return {"lt": k < q, "le": k <= q, "gt": k > q, "ge": k >= q}[kind]


def rank_reference(kind: str):
    """How many positions j <= t hold a token ``<op>`` the token at t (BOS included: id 0)."""
    return lambda seq: [None] + [sum(_holds(kind, seq[j], seq[t]) for j in range(t + 1)) for t in range(1, len(seq))]


def rank_task(kind: str) -> Task:
    def build(max_len):
        tokens = Tokens(LETTERS)
        return Program(Aggregate(getattr(Select, kind)(tokens, tokens), None, "count", name="rank", max_len=max_len))

    return Task(f"rank_{kind}", LETTERS, MAX_LEN, build, rank_reference(kind), alphabet=tuple(range(1, len(LETTERS))))


def reduction_task(kind: str, reduction: str) -> Task:
    """``reduction`` over ``tokens[j] <op> query[t]`` with a query that is not the key (a Map of
    the token), so selections may be empty (default -1)."""
    def build(max_len):
        tokens = Tokens(LETTERS)
        query = Map(lambda x: (2 * x + 1) % 6, tokens, name="query", desc="(2x + 1) mod 6")
        sel = getattr(Select, kind)(tokens, query)
        if reduction == "count":
            return Program(Aggregate(sel, None, "count", name="out", max_len=max_len))
        if reduction == "count_value":
            odd = Map(lambda x: x % 2, tokens, name="odd", desc="token id odd")
            return Program(Aggregate(sel, odd, "count", name="out", max_len=max_len))
        return Program(Aggregate(sel, tokens, reduction, name="out", default=-1, max_len=max_len))

    return Task(f"{reduction}_{kind}", LETTERS, MAX_LEN, build, lambda seq: [None] * len(seq), alphabet=tuple(range(1, len(LETTERS))))


@functools.lru_cache(maxsize=None)
def compiled(task: Task, family: str, kind: str):
    model = zoo.compile(task, family)
    return zoo.reparametrize(model, seed=5) if kind == "reparametrized" else model


@functools.lru_cache(maxsize=None)
def task_of(name: str, kind: str) -> Task:
    return rank_task(kind) if name == "rank" else reduction_task(kind, name)


@pytest.mark.parametrize("kind", COMPARISONS)
def test_rank_count_equals_its_definition(kind):
    task = task_of("rank", kind)

    @SOME
    @given(strategies.inputs(task))
    def check(tokens):
        got = [task.classes[c] if c != tasks.IGNORE else None for c in task.targets(tokens)[0]]
        assert got == task.reference(tokens[0].tolist())

    check()


@pytest.mark.parametrize("kind", COMPARISONS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_interpreter_equals_reference_interpreter_under_interventions(kind, reduction):
    task = task_of(reduction, kind)

    @SOME
    @given(strategies.interventions(task, max_size=3))
    def check(case):
        base, source, variable, position = case
        values, _ = counterfactual(task.program, base, source, [(variable, position)])
        for i in range(base.shape[0]):
            src = evaluate(task.program, source[i].tolist())
            j = int(position[i])
            slow = evaluate(task.program, base[i].tolist(), {(variable, j): src[variable][j]})
            for v in task.program.names:
                assert values[v][i].tolist() == slow[v], (v, base[i].tolist(), variable, j)

    check()


def test_strict_comparisons_may_select_nothing_even_on_the_key_itself():
    tokens = Tokens(LETTERS)
    assert Select.lt(tokens, tokens).may_be_empty and Select.gt(tokens, tokens).may_be_empty
    assert not Select.le(tokens, tokens).may_be_empty and not Select.ge(tokens, tokens).may_be_empty
    with pytest.raises(ValueError, match="default"):
        Aggregate(Select.lt(tokens, tokens), tokens, "last", name="x", max_len=4)
    assert str(Select.ge(tokens, tokens)) == "tokens[j] >= tokens[t]"


@pytest.mark.parametrize("family", zoo.FAMILIES)
@pytest.mark.parametrize("kind", COMPARISONS)
@pytest.mark.parametrize("model_kind", ("compiled", "reparametrized"))
def test_rank_count_compiles_exactly(family, kind, model_kind):
    """Count the smaller (or larger, ...) elements: every family, at the catalogue length."""
    task = task_of("rank", kind)
    model = compiled(task, family, model_kind)
    n = 20 if model_kind == "compiled" else 8
    check_equals_program(model, task, n, full_sample=128)
    check_ground_truth_patching(model, task, n)
    check_outside_ground_truth(model, task, n // 2)


@pytest.mark.parametrize("family", zoo.FAMILIES)
@pytest.mark.parametrize("kind", ("lt", "ge"))  # a BOS key (id 0) the strict "less" selects for every query, and one it rarely does
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_other_reductions_compile_exactly_or_are_refused_by_name(family, kind, reduction):
    task = task_of(reduction, kind)
    if (family, reduction) in REFUSED:
        with pytest.raises(CompileError) as err:
            zoo.compile(task, family)
        assert err.value.family == family and err.value.primitive.startswith(f"Aggregate({kind}, {REFUSED[(family, reduction)]}")
        return
    model = compiled(task, family, "compiled")
    check_equals_program(model, task, 10, full_sample=128)
    check_ground_truth_patching(model, task, 10)
    check_outside_ground_truth(compiled(task, family, "reparametrized"), task, 4)


def test_numerical_keys_compare_in_the_rnn_and_are_refused_by_name_elsewhere():
    def build(max_len):
        tokens = Tokens(LETTERS)
        key = Map(lambda x: 3 - x, tokens, name="key", numerical=True, desc="3 - token")
        return Program(Aggregate(Select.lt(key, key), None, "count", name="below", max_len=max_len))

    task = Task("numeric_rank", LETTERS, 10, build, lambda seq: [None] * len(seq), alphabet=tuple(range(1, len(LETTERS))))
    check_equals_program(zoo.compile(task, "rnn"), task, 10, full_sample=128)
    for family in ("transformer", "ssm"):
        with pytest.raises(CompileError, match="numerical.*Map it to a categorical variable"):
            zoo.compile(task, family)

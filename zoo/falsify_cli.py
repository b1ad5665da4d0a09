"""The ``zoo falsify`` subcommand; ``zoo/cli.py`` wires it in with ``add_falsify_parser(sub)``.
The search itself is :mod:`evaluation.falsify`.

Exit status: 0 when no violation was found (or a rerun no longer violates), 1 when one was
(the case is printed and saved), 2 on bad input (one line, as every ``zoo`` error).
"""

from __future__ import annotations

import shlex
import sys


def add_falsify_parser(sub) -> None:
    from zoo.compile import FAMILIES

    p = sub.add_parser("falsify", help="find the smallest random program and model where a method's finding violates a property")
    p.add_argument("method", nargs="?", help="a method name or import path pkg.mod:fn (not with --rerun)")
    p.add_argument("--property", default="score", help="score (headline score below --threshold), transfer (conclusion differs between families) or patch (an aligned location misses the counterfactual)")
    p.add_argument("--threshold", type=float, default=None, help="default 0.9 for score and transfer, 1.0 for patch")
    p.add_argument("--arch", action="append", help=f"a family to draw ({', '.join(FAMILIES)}; repeatable; default all)")
    p.add_argument("--kinds", default="compiled", help="comma-separated: compiled, reparametrized")
    p.add_argument("--primitive", action="append", help="a primitive programs may use (repeatable; default all): Map, Sum, Indices, Scan, Aggregate, Aggregate[eq], Aggregate[all/max], ...")
    p.add_argument("--max-nodes", type=int, default=4, help="nodes of a random program after tokens")
    p.add_argument("--min-nodes", type=int, default=1, help="at least this many (default 1: the output is computed, not the tokens)")
    p.add_argument("--max-symbols", type=int, default=3)
    p.add_argument("--allow-constant", action="store_true", help="also draw programs whose output does not depend on the input (skipped by default)")
    p.add_argument("--max-len", type=int, default=6)
    p.add_argument("--seed", type=int, default=0, help="the search's, the method's and the scoring's seed")
    p.add_argument("--budget", type=int, default=16, help="the method's own budget (its number of inputs)")
    p.add_argument("--max-seconds", type=float, default=120.0, help="stop the search (and shrinking) here; the smallest case so far is kept")
    p.add_argument("--max-examples", type=int, default=2000, help="cases drawn before giving up")
    p.add_argument("--out", default="zoo-falsify", help="directory the smallest case is saved to")
    p.add_argument("--rerun", metavar="DIR", help="rerun a saved case (the command a search prints)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the models are tiny)")
    p.set_defaults(func=cmd_falsify)


def cmd_falsify(args) -> int:
    import torch

    from evaluation import falsify as F

    torch.set_num_threads(args.threads)
    if args.rerun:
        search, case, record = F.load_case(args.rerun)
        print(f"rerunning {args.rerun}: {search.method}, property {search.property}")
        outcome = F.evaluate(search, case)
        print("\n".join(F.report(search, case, outcome)))
        same = outcome.violated == record["outcome"]["violated"] and outcome.kind == record["outcome"]["kind"]
        print(f"\n{'reproduced' if same else 'NOT reproduced'}: the saved case was {'a violation' if record['outcome']['violated'] else 'no violation'} ({record['outcome']['kind']})")
        return 1 if outcome.violated else 0
    if not args.method:
        raise ValueError("zoo falsify needs a METHOD (e.g. `zoo falsify probes`) or --rerun DIR")
    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    search = F.Search(args.method, args.property, args.threshold, tuple(args.arch) if args.arch else F.Search.archs, kinds,
                      max_nodes=args.max_nodes, min_nodes=args.min_nodes, max_symbols=args.max_symbols, max_len=args.max_len,
                      primitives=tuple(args.primitive) if args.primitive else None, varying=not args.allow_constant, seed=args.seed, budget=args.budget,
                      max_seconds=args.max_seconds, max_examples=args.max_examples)
    from tasks import strategies

    strategies.programs(**search.strategy_args())  # bad primitives or sizes: a one-line error before any work
    print(f"zoo falsify {search.method}: property {search.property} (threshold {search.limit:g}), families {', '.join(search.archs)}, "
          f"kinds {', '.join(search.kinds)}, up to {search.max_nodes} nodes, seed {search.seed}, at most {search.max_seconds:g} s", file=sys.stderr)
    result = F.falsify(search, progress=lambda line: print(line, file=sys.stderr, flush=True))
    refused = f"{result.refused} compiles refused"
    if result.case is None:
        print(f"no violation in {result.tried} cases ({refused}) in {result.seconds:.1f} s" + ("" if result.finished else " (stopped at --max-seconds)"))
        return 0
    out = F.save(result, args.out)
    shrunk = "shrunk" if result.finished else "shrinking stopped at --max-seconds"
    print(f"\n{search.method} violates '{search.property}': found after {result.found_seconds:.1f} s, {shrunk} in {result.shrinks} steps; "
          f"{result.tried} cases checked ({refused}), {result.seconds:.1f} s in all\n")
    print("\n".join(F.report(search, result.case, result.outcome)))
    print(f"\nsaved to {out} (models/, {F.CASE_FILE}); rerun: zoo falsify --rerun {shlex.quote(str(out))}")
    return 1

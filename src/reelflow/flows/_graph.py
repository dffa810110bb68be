"""The static graph of a flow, read from the source of its steps, and its checks.

Each step's ``self.next(...)`` call is parsed with :mod:`ast` (no code runs), which
gives the transition kind:

* ``linear``  ``self.next(self.a)``
* ``split``   ``self.next(self.a, self.b)``             (static branches, joined later)
* ``foreach`` ``self.next(self.a, foreach="items")``    (one task per item, joined later)
* ``switch``  ``self.next({"x": self.a, "y": self.b}, condition="attr")``  (one branch runs)
* a gang    ``self.next(self.a, num_parallel=4)``     (a foreach of 4 ``@parallel`` tasks started
  together, joined later; ``num_parallel`` is set)
* ``end``     the ``end`` step; no ``self.next``

A step defined as ``def name(self, inputs)`` is a join. Every rule is checked
before a run starts and each error names the step and the fix.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import FlowDefinitionError
from ._decorators import StepDecorator, get_decorators, is_step

__all__ = ["FlowGraph", "StepNode"]

# Attribute names a parameter or artifact may not take: FlowSpec API and steps' helpers.
RESERVED = frozenset(
    {"next", "input", "index", "foreach_stack", "merge_artifacts", "name", "script_name", "graph", "parameters"}
)


@dataclass
class StepNode:
    name: str
    func: Any
    doc: str
    lineno: int
    kind: str = "linear"  # linear | split | foreach | switch | end
    out_funcs: list[str] = field(default_factory=list)
    in_funcs: list[str] = field(default_factory=list)
    foreach_param: str | None = None
    num_parallel: int | None = None  # a gang (``num_parallel=``): its size when a literal, else 0
    condition: str | None = None
    switch_cases: dict[str, str] = field(default_factory=dict)
    is_join: bool = False
    decorators: dict[str, StepDecorator] = field(default_factory=dict)
    # Filled by the traversal: splits open at this step, outermost first.
    split_parents: list[str] = field(default_factory=list)
    closes: str | None = None  # for a join: the split or foreach it closes

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "type": self.kind,
            "next": self.out_funcs,
            "join": self.is_join,
            "doc": self.doc,
            "decorators": {k: v.to_json() for k, v in self.decorators.items()},
        }
        if self.foreach_param:
            d["foreach"] = self.foreach_param
        if self.num_parallel is not None:
            d["num_parallel"] = self.num_parallel
        if self.condition:
            d["condition"] = self.condition
            d["cases"] = self.switch_cases
        return d


class FlowGraph:
    """Steps of a flow class and the transitions between them, checked."""

    def __init__(self, flow_cls: type) -> None:
        self.name = flow_cls.__name__
        self.nodes: dict[str, StepNode] = {}
        for attr in dir(flow_cls):
            f = getattr(flow_cls, attr, None)
            if callable(f) and is_step(f):
                self.nodes[attr] = self._parse(attr, f)
        self._check()

    def __getitem__(self, name: str) -> StepNode:
        return self.nodes[name]

    def __contains__(self, name: object) -> bool:
        return name in self.nodes

    def __iter__(self) -> Iterator[StepNode]:
        return iter(self.sorted_nodes())

    def sorted_nodes(self) -> list[StepNode]:
        """Steps in breadth-first order from ``start`` (then source order)."""
        order: list[str] = []
        queue = ["start"] if "start" in self.nodes else []
        while queue:
            n = queue.pop(0)
            if n in order:
                continue
            order.append(n)
            queue.extend(self.nodes[n].out_funcs)
        rest = sorted((n for n in self.nodes if n not in order), key=lambda n: self.nodes[n].lineno)
        return [self.nodes[n] for n in order + rest]

    def to_json(self) -> dict[str, Any]:
        return {n.name: n.to_json() for n in self.sorted_nodes()}

    # -- parsing ---------------------------------------------------------------
    def _parse(self, name: str, func: Any) -> StepNode:
        try:
            src = textwrap.dedent(inspect.getsource(func))
            lineno = inspect.getsourcelines(func)[1]
        except (OSError, TypeError):
            raise FlowDefinitionError(
                f"cannot read the source of step {name!r}: flows must be defined in a .py file"
            ) from None
        tree = ast.parse(src)
        fdef = next(n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))
        node = StepNode(
            name=name, func=func, doc=inspect.getdoc(func) or "", lineno=lineno, decorators=get_decorators(func)
        )
        nargs = len(fdef.args.args)
        if nargs == 2:
            node.is_join = True
        elif nargs != 1:
            raise FlowDefinitionError(
                f"step {name!r} takes {nargs} arguments; a step is def {name}(self) or, to join branches, "
                f"def {name}(self, inputs)"
            )
        calls = [
            c for c in ast.walk(fdef)
            if isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute) and c.func.attr == "next"
            and isinstance(c.func.value, ast.Name) and c.func.value.id == "self"
        ]
        if name == "end":
            if calls:
                raise FlowDefinitionError("step 'end' calls self.next(); the end step is the last one and has no self.next()")
            node.kind = "end"
            return node
        if not calls:
            raise FlowDefinitionError(
                f"step {name!r} has no self.next() call; end the step with self.next(self.<following step>)"
            )
        if len(calls) > 1:
            raise FlowDefinitionError(
                f"step {name!r} calls self.next() {len(calls)} times; a step ends with exactly one self.next() call "
                "(use self.next({...}, condition=...) to choose a branch at run time)"
            )
        last = fdef.body[-1]
        if not (isinstance(last, ast.Expr) and last.value is calls[0]):
            raise FlowDefinitionError(
                f"step {name!r}: self.next() must be the last statement of the step (line {lineno + calls[0].lineno - 1})"
            )
        self._parse_next(node, calls[0])
        return node

    def _parse_next(self, node: StepNode, call: ast.Call) -> None:
        def step_ref(a: ast.expr) -> str:
            if isinstance(a, ast.Attribute) and isinstance(a.value, ast.Name) and a.value.id == "self":
                return a.attr
            raise FlowDefinitionError(
                f"step {node.name!r}: self.next() takes steps as self.<step>, got {ast.unparse(a)!r}"
            )

        kw = {k.arg: k.value for k in call.keywords}
        unknown = set(kw) - {"foreach", "condition", "num_parallel"}
        if unknown:
            raise FlowDefinitionError(
                f"step {node.name!r}: self.next() has no argument {sorted(map(str, unknown))[0]!r}; use foreach= or condition="
            )

        def literal(key: str) -> str:
            v = kw[key]
            if not (isinstance(v, ast.Constant) and isinstance(v.value, str)):
                raise FlowDefinitionError(
                    f"step {node.name!r}: {key}= must be the artifact name as a string literal, e.g. {key}=\"items\""
                )
            return v.value

        if call.args and isinstance(call.args[0], ast.Dict):
            d = call.args[0]
            if "condition" not in kw or len(call.args) != 1:
                raise FlowDefinitionError(
                    f"step {node.name!r}: a dict in self.next() needs condition=\"attr\" and nothing else, "
                    "e.g. self.next({\"x\": self.a, \"y\": self.b}, condition=\"choice\")"
                )
            node.kind = "switch"
            node.condition = literal("condition")
            for k, v in zip(d.keys, d.values):
                if not (isinstance(k, ast.Constant) and k.value is not None):
                    raise FlowDefinitionError(f"step {node.name!r}: switch keys must be literals")
                node.switch_cases[str(k.value)] = step_ref(v)
            node.out_funcs = list(dict.fromkeys(node.switch_cases.values()))
            return
        if "condition" in kw:
            raise FlowDefinitionError(
                f"step {node.name!r}: condition= needs a dict of branches, e.g. self.next({{\"x\": self.a}}, condition=\"c\")"
            )
        node.out_funcs = [step_ref(a) for a in call.args]
        if not node.out_funcs:
            raise FlowDefinitionError(f"step {node.name!r}: self.next() names no step")
        if "foreach" in kw and "num_parallel" in kw:
            raise FlowDefinitionError(f"step {node.name!r}: self.next() takes foreach= or num_parallel=, not both")
        if "foreach" in kw or "num_parallel" in kw:
            if len(node.out_funcs) != 1:
                raise FlowDefinitionError(f"step {node.name!r}: a foreach (or num_parallel) goes to exactly one step")
            node.kind = "foreach"
            if "foreach" in kw:
                node.foreach_param = literal("foreach")
            else:
                v = kw["num_parallel"]
                node.num_parallel = v.value if isinstance(v, ast.Constant) and isinstance(v.value, int) else 0
        elif len(node.out_funcs) > 1:
            if len(set(node.out_funcs)) != len(node.out_funcs):
                raise FlowDefinitionError(f"step {node.name!r}: self.next() names the same step twice")
            node.kind = "split"

    # -- checks ----------------------------------------------------------------
    def _check(self) -> None:
        for required in ("start", "end"):
            if required not in self.nodes:
                raise FlowDefinitionError(
                    f"flow {self.name} has no {required!r} step; every flow starts at `start` and finishes at `end` "
                    f"(add `@step def {required}(self): ...`)"
                )
        for n in self.nodes.values():
            for t in n.out_funcs:
                if t not in self.nodes:
                    raise FlowDefinitionError(
                        f"step {n.name!r} calls self.next(self.{t}) but the flow has no step {t!r}; "
                        "define it with @step or fix the name"
                    )
                self.nodes[t].in_funcs.append(n.name)
        if self.nodes["start"].is_join:
            raise FlowDefinitionError("step 'start' takes inputs; the start step is def start(self)")
        self._check_parallel()
        self._check_cycles()
        self._traverse()
        unreachable = [n for n in self.nodes if n != "start" and not self.nodes[n].in_funcs]
        unreachable += [n for n in self.nodes if n not in self._seen and n not in unreachable]
        if unreachable:
            raise FlowDefinitionError(
                f"step {unreachable[0]!r} is unreachable from 'start'; call self.next(self.{unreachable[0]}) "
                "from another step or delete it"
            )
        end = self.nodes["end"]
        if end.split_parents:
            raise FlowDefinitionError(
                f"step 'end' is reached inside the split of step {end.split_parents[-1]!r}; add a join step "
                "(def join(self, inputs)) before 'end'"
            )

    def _check_parallel(self) -> None:
        """Metaflow's rules: num_parallel= goes to a @parallel step, which only a num_parallel=
        transition reaches and which a join follows."""
        for n in self.nodes.values():
            if n.num_parallel is not None and "parallel" not in self.nodes[n.out_funcs[0]].decorators:
                t = n.out_funcs[0]
                raise FlowDefinitionError(f"step {n.name!r} starts a gang with self.next(self.{t}, num_parallel=...) "
                                          f"but step {t!r} has no @parallel decorator; add @parallel above @step")
            if "parallel" in n.decorators:
                for parent in n.in_funcs:
                    if self.nodes[parent].num_parallel is None:
                        raise FlowDefinitionError(
                            f"step {n.name!r} is @parallel but step {parent!r} reaches it without num_parallel=; "
                            f"write self.next(self.{n.name}, num_parallel=N) there")
                if n.kind != "linear" or not self.nodes[n.out_funcs[0]].is_join:
                    raise FlowDefinitionError(
                        f"step {n.name!r} is @parallel, so the step after it must be a join "
                        f"(def {n.out_funcs[0] if n.out_funcs else 'join'}(self, inputs)) that gathers the gang")

    def _check_cycles(self) -> None:
        color: dict[str, int] = {}

        def visit(n: str, path: list[str]) -> None:
            color[n] = 1
            for t in self.nodes[n].out_funcs:
                if color.get(t) == 1:
                    if self.nodes[n].kind != "switch":
                        loop = " -> ".join(path[path.index(t):] + [n, t]) if t in path else f"{n} -> {t}"
                        raise FlowDefinitionError(
                            f"steps {loop} form a cycle; a loop must go back through a conditional "
                            "self.next({...}, condition=...) so that it can end"
                        )
                elif t not in color:
                    visit(t, path + [n])
            color[n] = 2

        visit("start", [])

    def _traverse(self) -> None:
        # stacks hold (split step, branch) pairs; branch is None for a foreach
        self._seen: dict[str, tuple[tuple[str, str | None], ...]] = {}

        def visit(name: str, stack: tuple[tuple[str, str | None], ...], via: str) -> None:
            node = self.nodes[name]
            if name in self._seen:
                prev = self._seen[name]
                if [s for s, _ in prev] != [s for s, _ in stack]:
                    raise FlowDefinitionError(
                        f"step {name!r} is reached from {via!r} inside a different split than from its other "
                        "parents; close each split or foreach with a join step before merging paths"
                    )
                if prev != stack and not node.is_join:
                    top = stack[-1][0]
                    raise FlowDefinitionError(
                        f"step {name!r} is reached from several branches of step {top!r} ({', '.join(node.in_funcs)}); "
                        f"make it a join: def {name}(self, inputs)"
                    )
                return
            self._seen[name] = stack
            node.split_parents = [s for s, _ in stack]
            for t in node.out_funcs:
                target = self.nodes[t]
                if node.kind == "split":
                    child = stack + ((name, t),)
                elif node.kind == "foreach":
                    child = stack + ((name, None),)
                else:
                    child = stack
                if target.is_join:
                    if not child:
                        raise FlowDefinitionError(
                            f"step {t!r} is defined as a join (def {t}(self, inputs)) but closes no split or "
                            f"foreach (it follows {name!r}); make it def {t}(self)"
                        )
                    closes = child[-1][0]
                    if target.closes not in (None, closes):
                        raise FlowDefinitionError(f"join {t!r} closes both {target.closes!r} and {closes!r}")
                    target.closes = closes
                    visit(t, child[:-1], name)
                else:
                    visit(t, child, name)

        visit("start", (), "start")
        for n in self.nodes.values():
            if n.is_join and n.closes and self.nodes[n.closes].kind == "split":
                branches = self.nodes[n.closes].out_funcs
                if len(n.in_funcs) < len(branches):
                    raise FlowDefinitionError(
                        f"join {n.name!r} receives {len(n.in_funcs)} input(s) but step {n.closes!r} splits into "
                        f"{len(branches)} branches ({', '.join(branches)}); every branch must end in {n.name!r}"
                    )

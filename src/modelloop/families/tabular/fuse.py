"""Make a tabular ONNX graph cheaper to run without changing what it computes.

skl2onnx converts a soft-voting ensemble member by member: each pipeline gets its own preprocessing
nodes and its own tree-ensemble node, and the ensemble is a ``Mul`` per member and a ``Sum``. A bagged
model (the search's fold models, ``search._bagged``) has k pipelines per member, so the fraud example's
15 boosters made a 216-node graph, and ONNX Runtime pays for every node it runs (``benchmarks/RESULTS.md``,
2026-12-06 "fused tree ensembles"). :func:`compact_graph` rewrites the graph in two steps:

1. :func:`dedupe_nodes`: nodes that compute the same thing (same op, attributes and inputs; initializers
   compared by value) are kept once. The fold pipelines' preprocessing is usually identical (the same
   encoder categories), so one copy feeds every booster.
2. :func:`fuse_trees`: the ensemble's tree nodes and their ``Mul``/``Sum`` become one
   ``TreeEnsembleRegressor`` per kind of split (its targets are the members' raw scores, one per member
   and class), then each member's link (sigmoid or softmax, as the classifier node applied) and the
   weighted sum as a ``MatMul``. Members fed by different preprocessing read one concatenated input
   (their feature ids offset); a member that is not a tree node (a linear model) stays a ``Sum`` input.

The outputs keep their names, shapes and meaning: probabilities equal the unfused graph's to float32
rounding (~1e-7; ``tests/optimization/test_fuse.py``). A graph without that vote (one model, a stack)
or whose trees it does not know (another link, tensor-valued attributes) is left as step 1 made it.

What it saves is per-node overhead, so mostly at small batches: tree traversal itself is unchanged,
and from a few dozen records a run it is nearly all the time (``benchmarks/tree_fusion.py``).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import numpy as np

__all__ = ["compact_graph", "dedupe_nodes", "fuse_trees"]

_ML = "ai.onnx.ml"
_NODE_ATTRS = ("nodes_falsenodeids", "nodes_featureids", "nodes_hitrates", "nodes_missing_value_tracks_true",
               "nodes_modes", "nodes_nodeids", "nodes_treeids", "nodes_truenodeids", "nodes_values")
_LINKS = {"TreeEnsembleClassifier": ("LOGISTIC", "SOFTMAX"), "TreeEnsembleRegressor": ("NONE",)}


def compact_graph(model: Any) -> Any:
    """``model`` (an ``onnx.ModelProto``, changed in place and returned) deduplicated, then fused."""
    dedupe_nodes(model)
    fuse_trees(model)
    return model


# --------------------------------------------------------------------------- step 1: dedupe
def dedupe_nodes(model: Any) -> int:
    """Keep one of each set of nodes that compute the same outputs; returns how many were dropped.

    Nodes are visited in the graph's (topological) order; a node's key is its op, domain, attributes
    and its inputs after earlier merges. A graph with subgraphs (If, Loop) or random ops is left alone."""
    from onnx import AttributeProto, numpy_helper

    graph = model.graph
    if any(a.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS) for n in graph.node for a in n.attribute) \
            or any(n.op_type.startswith("Random") for n in graph.node):
        return 0
    rename: dict[str, str] = {}
    first_init: dict[tuple, str] = {}
    kept_inits = []
    fed = {i.name for i in graph.input}  # an initializer that is also an input is a default: kept as it is
    for init in graph.initializer:
        if init.name in fed:
            kept_inits.append(init)
            continue
        arr = numpy_helper.to_array(init)
        value = (init.data_type, tuple(init.dims), repr(arr.tolist()) if arr.dtype == object else arr.tobytes())
        if value in first_init:
            rename[init.name] = first_init[value]
        else:
            first_init[value] = init.name
            kept_inits.append(init)
    protected = {o.name for o in graph.output}
    seen: dict[tuple, Any] = {}
    kept, dropped = [], 0
    for node in graph.node:
        inputs = [rename.get(i, i) for i in node.input]
        del node.input[:]
        node.input.extend(inputs)
        attrs = tuple(sorted(a.SerializeToString() for a in node.attribute))
        key = (node.domain, node.op_type, tuple(inputs), len(node.output), attrs)
        twin = seen.get(key)
        if twin is not None and not protected.intersection(node.output):
            rename.update({o: t for o, t in zip(node.output, twin.output, strict=True) if o})
            dropped += 1
            continue
        seen.setdefault(key, node)
        kept.append(node)
    _replace(graph.node, kept)
    _replace(graph.initializer, kept_inits)
    _drop_dead(graph)
    return dropped


# --------------------------------------------------------------------------- step 2: fuse trees
def fuse_trees(model: Any, by_mode: bool = True) -> bool:
    """Fuse a soft-voting ensemble of tree-ensemble nodes (``Mul`` by a weight each, one ``Sum``) into
    one tree node per split kind and a few arithmetic nodes; returns whether the graph changed.
    ``by_mode=False`` puts every tree in one node (only to measure what the split kinds' nodes save)."""
    graph = model.graph
    plan = _find_vote(graph)
    if plan is None:
        return False
    widths = _input_widths(model, [t.input[0] for t in plan["trees"]])
    if widths is None:
        return False
    new_nodes, new_inits = _fused_nodes(plan, widths, by_mode)
    # a node is known by its first output (single assignment: unique in a graph)
    vote = plan["sum"].output[0]
    drop = {n.output[0] for n in plan["drop"]} | (set() if plan["kept"] else {vote})
    at = next(i for i, n in enumerate(graph.node) if n.output[0] == vote)
    before = [n for n in graph.node[:at] if n.output[0] not in drop]
    after = [n for n in graph.node[at:] if n.output[0] not in drop]
    _replace(graph.node, before + new_nodes + after)
    graph.initializer.extend(new_inits)
    _drop_dead(graph)
    return True


def _find_vote(graph: Any) -> dict[str, Any] | None:
    """The ensemble's tree members when the graph has skl2onnx's soft vote (one ``Sum`` of ``Mul``-weighted
    member outputs) with at least two members read straight off tree nodes; other members (a linear
    model) are ``kept`` as the ``Sum`` inputs they are. None when there is nothing to fuse."""
    from onnx.helper import get_attribute_value
    from onnx.numpy_helper import to_array

    producer = {o: n for n in graph.node for o in n.output}
    uses = Counter(i for n in graph.node for i in n.input)
    uses.update(o.name for o in graph.output)
    inits = {i.name: i for i in graph.initializer}
    sums = [n for n in graph.node if n.op_type == "Sum" and len(n.input) > 1]
    if len(sums) != 1:
        return None
    trees, weights, drop, kept = [], [], [], []
    for vote_input in sums[0].input:
        chain, name = [], vote_input
        node = producer.get(name)
        if node is not None and node.op_type == "Flatten" and uses[name] == 1:  # the regressor's vote
            chain.append(node)
            name = node.input[0]
            node = producer.get(name)
        tree = None
        if node is not None and node.op_type == "Mul" and uses[name] == 1:
            scores, w = node.input
            tree = producer.get(scores)
            if (tree is None or tree.domain != _ML or tree.op_type not in _LINKS or uses[scores] != 1
                    or any(uses[o] for o in tree.output if o != scores)  # a classifier's own label: unused
                    or w not in inits or to_array(inits[w]).size != 1):
                tree = None
        if tree is None:
            kept.append(vote_input)
            continue
        drop += [*chain, node, tree]
        trees.append(tree)
        weights.append(float(to_array(inits[w]).ravel()[0]))
    if len(trees) < 2:
        return None
    attrs = [{a.name: get_attribute_value(a) for a in t.attribute} for t in trees]
    link = _link(trees, attrs)
    if link is None:
        return None
    return {"trees": trees, "attrs": attrs, "weights": weights, "sum": sums[0], "drop": drop, "kept": kept, **link}


def _link(trees: list[Any], attrs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """What turns each member's raw scores into its output: ``kind`` (``logistic``: binary classifier,
    ``softmax``: K classes, ``none``: regressor) and ``classes`` (scores per member), or None when the
    members differ or use anything else (tensor-valued attributes, other links, several targets)."""
    op = trees[0].op_type
    if any(t.op_type != op for t in trees) or any(k.endswith("_as_tensor") for a in attrs for k in a):
        return None
    posts = {a.get("post_transform", b"NONE") for a in attrs}
    posts = {p.decode() if isinstance(p, bytes) else p for p in posts}
    if len(posts) != 1 or next(iter(posts)) not in _LINKS[op]:
        return None
    post = next(iter(posts))
    if op == "TreeEnsembleRegressor":
        if any(a.get("n_targets", 1) != 1 or a.get("aggregate_function", b"SUM") not in (b"SUM", "SUM")
               or len(a.get("base_values", [])) > 1 for a in attrs):
            return None
        return {"kind": "none", "classes": 1}
    labels = {tuple(a.get("classlabels_int64s", ())) for a in attrs}
    if len(labels) != 1 or any("classlabels_strings" in a for a in attrs):
        return None
    k = len(next(iter(labels)))
    if post == "LOGISTIC" and k == 2 and all(set(a["class_ids"]) == {0} and len(a.get("base_values", [])) <= 1
                                             for a in attrs):
        return {"kind": "logistic", "classes": 1}
    if post == "SOFTMAX" and k > 2 and all(set(a["class_ids"]) <= set(range(k))
                                           and len(a.get("base_values", [])) in (0, k) for a in attrs):
        return {"kind": "softmax", "classes": k}
    return None


def _input_widths(model: Any, names: list[str]) -> dict[str, int] | None:
    """Width of each distinct tree input (from shape inference); only needed when there are several."""
    distinct = list(dict.fromkeys(names))
    if len(distinct) == 1:
        return {distinct[0]: 0}
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    dims = {v.name: v.type.tensor_type.shape.dim for v in [*inferred.graph.value_info, *inferred.graph.input]}
    widths = {}
    for name in distinct:
        dim = dims.get(name)
        if dim is None or len(dim) != 2 or not dim[1].HasField("dim_value"):
            return None
        widths[name] = int(dim[1].dim_value)
    return widths


def _fused_nodes(plan: dict[str, Any], widths: dict[str, int], by_mode: bool) -> tuple[list[Any], list[Any]]:
    """The fused tree node(s) and the link + weighted-sum nodes writing the vote's ``Sum`` output."""
    from onnx import helper, numpy_helper

    trees, attrs, weights, kind, k = plan["trees"], plan["attrs"], plan["weights"], plan["kind"], plan["classes"]
    vote = plan["sum"]
    prefix = f"{vote.output[0]}_fused"
    out = vote.output[0]
    if plan["kept"]:  # the other members' weighted outputs and the trees' vote go on being summed
        out = f"{prefix}_vote"
        del vote.input[:]
        vote.input.extend([*plan["kept"], out])
    nodes: list[Any] = []
    inits: list[Any] = []
    inputs = list(widths)
    source = inputs[0]
    offsets = dict.fromkeys(inputs, 0)
    if len(inputs) > 1:
        source = f"{prefix}_features"
        nodes.append(helper.make_node("Concat", inputs, [source], axis=1, name=f"{prefix}_concat"))
        start = 0
        for name in inputs:
            offsets[name], start = start, start + widths[name]
    # one tree node per kind of split: ONNX Runtime walks a node whose splits are all of one mode faster
    groups: dict[frozenset, list[int]] = defaultdict(list)
    for i, a in enumerate(attrs):
        groups[frozenset(m for m in a["nodes_modes"] if m != b"LEAF") if by_mode else frozenset()].append(i)
    order: list[int] = []
    parts = []
    for g, members in enumerate(groups.values()):
        name = f"{prefix}_scores{g}"
        nodes.append(_tree_node([attrs[i] for i in members], [offsets[trees[i].input[0]] for i in members], k,
                                source, name, f"{prefix}_trees{g}"))
        order += members
        parts.append(name)
    scores = parts[0]
    if len(parts) > 1:
        scores = f"{prefix}_scores"
        nodes.append(helper.make_node("Concat", parts, [scores], axis=1, name=f"{prefix}_concat_scores"))
    b = len(order)
    w = np.asarray([weights[i] for i in order], dtype=np.float32)
    if kind == "softmax":  # [N, B*K] -> [N, B, K] -> softmax per member -> weighted sum over members
        matrix = np.zeros((b * k, k), dtype=np.float32)
        for j in range(b):
            matrix[j * k:(j + 1) * k] = np.eye(k, dtype=np.float32) * w[j]
        inits += [numpy_helper.from_array(np.array([-1, b, k], dtype=np.int64), f"{prefix}_3d"),
                  numpy_helper.from_array(np.array([-1, b * k], dtype=np.int64), f"{prefix}_2d"),
                  numpy_helper.from_array(matrix, f"{prefix}_weights")]
        nodes += [helper.make_node("Reshape", [scores, f"{prefix}_3d"], [f"{prefix}_by_member"], name=f"{prefix}_r3"),
                  helper.make_node("Softmax", [f"{prefix}_by_member"], [f"{prefix}_proba3"], axis=-1,
                                   name=f"{prefix}_softmax"),
                  helper.make_node("Reshape", [f"{prefix}_proba3", f"{prefix}_2d"], [f"{prefix}_proba"],
                                   name=f"{prefix}_r2"),
                  helper.make_node("MatMul", [f"{prefix}_proba", f"{prefix}_weights"], [out], name=f"{prefix}_vote")]
    elif kind == "logistic":  # p(class 1) per member -> weighted sum; class 0 gets the rest of the weight
        inits += [numpy_helper.from_array(w.reshape(b, 1), f"{prefix}_weights"),
                  numpy_helper.from_array(np.array([[w.sum(dtype=np.float32)]], dtype=np.float32),
                                          f"{prefix}_total")]
        nodes += [helper.make_node("Sigmoid", [scores], [f"{prefix}_p1"], name=f"{prefix}_sigmoid"),
                  helper.make_node("MatMul", [f"{prefix}_p1", f"{prefix}_weights"], [f"{prefix}_pos"],
                                   name=f"{prefix}_vote"),
                  helper.make_node("Sub", [f"{prefix}_total", f"{prefix}_pos"], [f"{prefix}_neg"],
                                   name=f"{prefix}_rest"),
                  helper.make_node("Concat", [f"{prefix}_neg", f"{prefix}_pos"], [out], axis=1, name=f"{prefix}_proba")]
    else:  # regression: the members' values -> weighted sum
        inits.append(numpy_helper.from_array(w.reshape(b, 1), f"{prefix}_weights"))
        nodes.append(helper.make_node("MatMul", [scores, f"{prefix}_weights"], [out], name=f"{prefix}_vote"))
    return nodes, inits


def _tree_node(attrs: list[dict[str, Any]], offsets: list[int], k: int, source: str, output: str,
               name: str) -> Any:
    """One ``TreeEnsembleRegressor`` holding every tree of ``attrs`` (member j's class c scores go to
    target ``j * k + c``, its base values with them), reading ``source`` at each member's offset."""
    from onnx import helper

    cols: dict[str, Any] = defaultdict(list)
    base: list[float] = []
    tree_offset = 0
    for j, (a, offset) in enumerate(zip(attrs, offsets, strict=True)):
        n = len(a["nodes_nodeids"])
        ids = a["nodes_treeids"]
        for key in _NODE_ATTRS:
            if key == "nodes_treeids":
                cols[key] += [t + tree_offset for t in ids]
            elif key == "nodes_featureids":
                cols[key] += [f + offset for f in a[key]]
            elif key in a:
                cols[key] += list(a[key])
            else:  # optional: hit rates 1, missing values go the false way
                cols[key] += [1.0 if key == "nodes_hitrates" else 0] * n
        leaf = "class" if "class_ids" in a else "target"
        cols["target_ids"] += [j * k + c for c in a[f"{leaf}_ids"]]
        cols["target_nodeids"] += list(a[f"{leaf}_nodeids"])
        cols["target_treeids"] += [t + tree_offset for t in a[f"{leaf}_treeids"]]
        cols["target_weights"] += list(a[f"{leaf}_weights"])
        base += list(a.get("base_values") or [0.0] * k)
        tree_offset += max(ids) + 1
    return helper.make_node("TreeEnsembleRegressor", [source], [output], domain=_ML, name=name,
                            n_targets=len(attrs) * k, post_transform="NONE", aggregate_function="SUM",
                            base_values=base, **cols)


# --------------------------------------------------------------------------- helpers
def _replace(field: Any, items: list[Any]) -> None:
    """Set a repeated protobuf field to ``items`` (copies: protobuf owns its elements)."""
    copies = [type(i)() for i in items]
    for c, i in zip(copies, items, strict=True):
        c.CopyFrom(i)
    del field[:]
    field.extend(copies)


def _drop_dead(graph: Any) -> None:
    """Remove nodes none of whose outputs is used, then initializers nothing reads."""
    while True:
        used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        alive = [n for n in graph.node if any(o in used for o in n.output)]
        if len(alive) == len(graph.node):
            break
        _replace(graph.node, alive)
    used = {i for n in graph.node for i in n.input}
    _replace(graph.initializer, [i for i in graph.initializer if i.name in used])

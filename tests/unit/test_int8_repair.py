"""The int8 repair's pure parts: the search over ranked ops (with a fake evaluation), op
matching by name, layer, type or pattern, and how a TFLite tensor name shows its layer."""

from __future__ import annotations

import pytest

from tfbuild.errors import DataError, TfbuildError
from tfbuild.formats.tflite.layers import QuantizedOp, layer_of, matching_ops
from tfbuild.formats.tflite.repair import RepairFailed, Trial, metric_drop, search

RANKED = [f"op{i}" for i in range(10)]


def evaluator(needed: set[str], calls: list[list[str]]):
    """Meets the target once every op in `needed` is in float (more float ops never hurt)."""

    def evaluate(float_ops: list[str]) -> Trial:
        calls.append(list(float_ops))
        meets = needed <= set(float_ops)
        drop = 0.0 if meets else 0.2
        return Trial(len(float_ops), float_ops[-1] if float_ops else "", "probs", "accuracy", 0.9 - drop, 0.9,
                     drop, 1000 + 100 * len(float_ops), 1.0 - drop, meets, meets)  # fmt: skip

    return evaluate


def test_full_int8_that_meets_the_target_keeps_nothing_in_float():
    calls: list[list[str]] = []
    chosen, trials = search(RANKED, [], evaluator(set(), calls), 0.01)
    assert chosen == [] and calls == [[]] and len(trials) == 1


@pytest.mark.parametrize("needed", [{"op0"}, {"op0", "op3"}, {"op6"}, set(RANKED)])
def test_bisection_finds_the_shortest_ranked_prefix(needed):
    calls: list[list[str]] = []
    chosen, trials = search(RANKED, [], evaluator(needed, calls), 0.01)
    shortest = max(RANKED.index(op) for op in needed) + 1
    assert chosen == RANKED[:shortest]
    assert len(calls) <= 2 + len(RANKED).bit_length(), "bisection, not one op at a time"
    assert [t.float_ops for t in trials] == [len(c) for c in calls], "trials in the order tried"
    assert trials[0].float_ops == 0 and trials[1].float_ops == len(RANKED)


def test_the_users_float_ops_stay_in_every_candidate():
    calls: list[list[str]] = []
    chosen, _ = search(RANKED, ["mine"], evaluator({"mine", "op1"}, calls), 0.01)
    assert chosen == ["mine", "op0", "op1"]
    assert all(c[0] == "mine" for c in calls)


def test_nothing_left_to_try_fails_with_both_ends_named():
    calls: list[list[str]] = []
    with pytest.raises(RepairFailed) as caught:
        search(RANKED, [], evaluator({"not an op"}, calls), 0.01)
    message = str(caught.value)
    assert isinstance(caught.value, TfbuildError) and "\n" not in message
    assert "max_metric_drop=0.01" in message and "all 10 quantized ops in float" in message


def test_metric_drop_reads_each_metric_its_own_way():
    import numpy as np

    targets = {"label": np.array([0, 1, 1, 0]), "size": np.array([[1.0], [2.0], [3.0], [4.0]])}
    tasks = {"label": "classification", "size": "regression"}
    reference = {"label": np.eye(2)[[0, 1, 1, 0]], "size": targets["size"] + 0.1}
    worse_size = {"label": reference["label"], "size": targets["size"] + 0.5}
    assert metric_drop(worse_size, reference, targets, tasks) == ("size", "mae", 0.5, 0.1, 0.4)
    worse_label = {"label": np.eye(2)[[1, 1, 1, 0]], "size": reference["size"]}
    assert metric_drop(worse_label, reference, targets, tasks) == ("label", "accuracy", 0.75, 1.0, 0.25)


OPS = [
    QuantizedOp("model/conv0/Relu;model/conv0/BiasAdd;model/conv0/Conv2D", "CONV_2D", "conv0"),
    QuantizedOp("model/pool0/MaxPool", "MAX_POOL_2D", "pool0"),
    QuantizedOp("model/conv1/Relu;model/conv1/Conv2D", "CONV_2D", "conv1"),
    QuantizedOp("model/dense/MatMul;model/dense/BiasAdd", "FULLY_CONNECTED", "dense"),
    QuantizedOp("StatefulPartitionedCall:0", "SOFTMAX", ""),
]


@pytest.mark.parametrize(
    "patterns, picked",
    [
        (["dense"], ["model/dense/MatMul;model/dense/BiasAdd"]),  # a layer
        (["CONV_2D"], [OPS[0].name, OPS[2].name]),  # an op type
        (["conv[0-9]"], [OPS[0].name, OPS[2].name]),  # a pattern over layers
        (["StatefulPartitionedCall:0"], [OPS[4].name]),  # an op's exact name
        ([OPS[3].name, "conv0"], [OPS[0].name, OPS[3].name]),  # graph order, whatever the order given
        (["conv0", "CONV_2D"], [OPS[0].name, OPS[2].name]),  # each op once
    ],
)
def test_float_layers_pick_ops_by_name_layer_type_or_pattern(patterns, picked):
    assert matching_ops(patterns, OPS, "export.tflite.int8.float_layers") == picked


def test_a_pattern_must_match_in_full_and_must_match_something():
    with pytest.raises(DataError) as caught:
        matching_ops(["conv"], OPS, "export.tflite.int8.float_layers")
    message = str(caught.value)
    assert message.startswith("export.tflite.int8.float_layers: 'conv' matches no quantized op")
    assert "conv0, conv1, dense, pool0" in message and "CONV_2D" in message and "\n" not in message


@pytest.mark.parametrize(
    "name, layer",
    [
        ("model/conv0/Relu;model/conv0/BiasAdd;model/conv0/Conv2D", "conv0"),
        ("cnn/conv0/BiasAdd/ReadVariableOp1", "conv0"),
        ("model/mobilenetv2_0.35_32/block_1_expand_BN/FusedBatchNormV3", "block_1_expand_BN"),
        ("StatefulPartitionedCall:0", ""),
        ("tfl.dequantize", ""),
    ],
)
def test_the_keras_layer_is_read_from_the_tensor_name(name, layer):
    assert layer_of(name) == layer

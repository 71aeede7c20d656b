"""Model files read as data, never run (no TensorFlow): Python code saved in a Keras config
is found wherever it hides, a SavedModel's keras_metadata.pb is decoded by a bounded reader,
and a `.keras` zip is bounded by what its members declare before anything is extracted.
Real tf_keras files are tried end to end in tests/integration/test_model_code.py."""

from __future__ import annotations

import json
import random
import struct
import zipfile
from pathlib import Path

import pytest

from tfbuild.errors import ConfigError, DataError
from tfbuild.models import model_file
from tfbuild.models.keras_metadata import MAX_BYTES, node_metadata
from tfbuild.models.model_file import (
    MAX_KERAS_BYTES,
    check_trusted,
    inspect_model_file,
    serialized_code,
    verify_keras_archive,
)

# What tf_keras 2.19 writes for Lambda(f): f's marshalled code, base64 (shortened here).
CODE = ["4wEAAAAAAAAAAAAAAAEAAAACAAAAQwAAAHMEAAAAfABTACkBTqkAKQHaAXhyAQAAAHIBAAAA", None, None]


def lambda_layer(name: str, **types: str) -> dict:
    """A Lambda layer's config, each callable saved as `types` says ("lambda": bytecode)."""
    config: dict = {"name": name, "trainable": True, "dtype": "float32", "arguments": {}}
    for callable_name in ("function", "output_shape", "mask"):
        kind = types.get(callable_name)
        if kind is not None:
            value = CODE if kind == "lambda" else ("double" if kind == "function" else None)
            config.update({callable_name: value, f"{callable_name}_type": kind, f"{callable_name}_module": "__main__"})
    return {"class_name": "Lambda", "config": config, "name": name, "inbound_nodes": [[["dense", 0, 0, {}]]]}


def functional(*layers: dict) -> dict:
    inputs = {"class_name": "InputLayer", "config": {"name": "x", "batch_input_shape": [None, 4]}, "name": "x"}
    dense = {"class_name": "Dense", "config": {"name": "dense", "units": 4}, "name": "dense"}
    return {"class_name": "Functional", "config": {"name": "model", "layers": [inputs, dense, *layers],
            "input_layers": [["x", 0, 0]], "output_layers": [[layers[-1]["name"] if layers else "dense", 0, 0]]}}  # fmt: skip


def sequential(name: str, *layers: dict) -> dict:
    return {"class_name": "Sequential", "config": {"name": name, "layers": list(layers)}, "name": name}


def wrapper(class_name: str, name: str, inner: dict) -> dict:
    return {"class_name": class_name, "config": {"name": name, "layer": inner}, "name": name}


HIDING_PLACES = {
    "top level": (functional(lambda_layer("lambda", function="lambda")), "layer 'model/lambda' (its function)"),
    "in a Sequential": (functional(sequential("inner", lambda_layer("lambda", function="lambda"))),
                        "layer 'model/inner/lambda' (its function)"),
    "in a wrapper": (functional(wrapper("TimeDistributed", "td", lambda_layer("lambda", function="lambda"))),
                     "layer 'model/td/lambda' (its function)"),
    "wrapper in a wrapper": (functional(wrapper("Bidirectional", "bi", wrapper("TimeDistributed", "td", lambda_layer(
        "fn", function="lambda")))), "layer 'model/bi/td/fn' (its function)"),
    "output_shape only": (functional(lambda_layer("lambda", function="function", output_shape="lambda")),
                          "layer 'model/lambda' (its output_shape)"),
    "mask only": (functional(lambda_layer("lambda", function="function", mask="lambda")),
                  "layer 'model/lambda' (its mask)"),
    "a __lambda__ activation": (functional({"class_name": "Dense", "name": "d", "config": {"name": "d", "activation": {
        "class_name": "__lambda__", "config": {"value": CODE}}}}), "layer 'model/d' (a lambda in its config)"),
}  # fmt: skip


@pytest.mark.parametrize("place", HIDING_PLACES)
def test_code_is_found_wherever_it_hides(place):
    config, where = HIDING_PLACES[place]
    assert list(serialized_code(config))[0] == where


@pytest.mark.parametrize(
    "layer",
    [
        lambda_layer("by_name", function="function"),  # a registered function, looked up by name
        lambda_layer("raw_shape", function="function", output_shape="raw"),
        {"class_name": "Dense", "name": "d", "config": {"name": "d", "function_type": "function", "units": 2}},
    ],
)
def test_a_config_without_bytecode_holds_no_code(layer):
    assert list(serialized_code(functional(layer))) == []


def test_code_is_found_at_any_depth_without_recursion():
    config: dict = lambda_layer("deep", function="lambda")
    for i in range(3000):  # deeper than Python's recursion limit
        config = wrapper("TimeDistributed", f"w{i}", config)
    (found,) = serialized_code(config)
    assert found.endswith("/w0/deep' (its function)")


# --- the three containers, refused while planning -------------------------------------------


def write_keras(path: Path, config: dict) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "2.19.0"}))
        archive.writestr("config.json", json.dumps(config))
    return path


def write_h5(path: Path, config: dict) -> Path:
    import h5py

    with h5py.File(path, "w") as file:
        file.attrs["keras_version"] = "2.19.0"
        file.attrs["model_config"] = json.dumps(config)
    return path


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def metadata_pb(*metadata: str) -> bytes:
    """SavedMetadata{nodes: [SavedObject{node_id, node_path, identifier, metadata, version}]}."""
    nodes = b""
    for i, text in enumerate(metadata):
        node = varint(2 << 3) + varint(i) + field(3, b"root") + field(4, b"_tf_keras_layer") + field(5, text.encode())
        node += field(6, varint(1 << 3) + varint(1))  # VersionDef{producer: 1}
        nodes += field(1, node)
    return nodes


def write_saved_model(folder: Path, config: dict) -> Path:
    """A Keras SavedModel as tf_keras writes its metadata: the root model's node holds the
    whole config, then one node per layer."""
    folder.mkdir()
    (folder / "saved_model.pb").write_bytes(b"\x08\x01")
    layers = config["config"]["layers"]
    root = json.dumps({"name": "model", "class_name": "Functional", "config": config["config"]})
    (folder / "keras_metadata.pb").write_bytes(metadata_pb(root, *(json.dumps(layer) for layer in layers)))
    return folder


CONTAINERS = {"keras": lambda p, c: write_keras(p / "m.keras", c), "h5": lambda p, c: write_h5(p / "m.h5", c),
              "saved_model": lambda p, c: write_saved_model(p / "sm", c)}  # fmt: skip


@pytest.mark.parametrize("container", CONTAINERS)
@pytest.mark.parametrize("place", ["top level", "in a Sequential", "in a wrapper", "output_shape only"])
def test_each_container_is_refused_with_the_layer_and_the_way_in(tmp_path, container, place):
    config, where = HIDING_PLACES[place]
    info = inspect_model_file(CONTAINERS[container](tmp_path, config))
    with pytest.raises(ConfigError) as refused:
        check_trusted(info, trust_code=False)
    assert str(refused.value).startswith(f"model.path: {info.path}: {where}")
    assert str(refused.value).endswith(" is Python code saved in the file, which loading would run; refused (set "
                                       "model.trust_code: true only if you trust whoever wrote the file)")  # fmt: skip
    check_trusted(info, trust_code=True)
    with pytest.raises(DataError):  # the loading step's second check
        check_trusted(info, trust_code=False, error=DataError)


@pytest.mark.parametrize("container", CONTAINERS)
def test_a_model_without_code_needs_no_trust(tmp_path, container):
    info = inspect_model_file(CONTAINERS[container](tmp_path, functional(lambda_layer("by_name", function="function"))))
    assert info.code == ()
    check_trusted(info, trust_code=False)


# --- keras_metadata.pb, malformed ----------------------------------------------------------


def test_the_metadata_reader_reads_what_it_wrote_and_skips_other_fields(tmp_path):
    tmp_path.joinpath("keras_metadata.pb").write_bytes(
        varint(7 << 3 | 0) + varint(300) + varint(8 << 3 | 1) + b"\0" * 8 + varint(9 << 3 | 5) + b"\0" * 4
        + metadata_pb('{"a": 1}', "") + field(1, b""))  # fmt: skip
    assert node_metadata(tmp_path, "model.path") == ['{"a": 1}', "", ""]


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"\x0a\x05abc", "a field of 5 bytes at byte 2, past the end"),
        (b"\x0a", "truncated at byte 1"),
        (b"\x08" + b"\xff" * 11, "a varint longer than 10 bytes at byte 11"),
        (b"\x0b", "wire type 3 at byte 1"),
        (b"\x00", "field number 0 at byte 1"),
        (b"\x09\x00", "truncated at byte 1"),
        (field(1, field(5, b"\xff\xfe")), "metadata that is not UTF-8"),
        (field(1, varint(5 << 3) + varint(3)), "a metadata field that is not a string"),
    ],
)
def test_malformed_metadata_is_one_line(tmp_path, data, problem):
    tmp_path.joinpath("keras_metadata.pb").write_bytes(data)
    with pytest.raises(ConfigError) as refused:
        node_metadata(tmp_path, "model.path")
    assert str(refused.value) == f"model.path: {tmp_path}/keras_metadata.pb is not a Keras SavedModel's metadata ({problem})"


def test_oversized_or_unreadable_metadata_is_refused_before_it_is_read_whole(tmp_path):
    folder = write_saved_model(tmp_path / "sm", functional())
    with open(folder / "keras_metadata.pb", "r+b") as file:
        file.truncate(MAX_BYTES + 1)  # sparse: no disk used
    with pytest.raises(ConfigError, match=r"keras_metadata\.pb is larger than 268,435,456 bytes"):
        inspect_model_file(folder)
    (folder / "keras_metadata.pb").write_bytes(metadata_pb("{not json"))
    with pytest.raises(ConfigError, match=r"^model\.path: .*/sm/keras_metadata\.pb has unreadable metadata \("):
        inspect_model_file(folder)
    (folder / "keras_metadata.pb").write_bytes(metadata_pb("[" * 100_000 + "]" * 100_000))
    with pytest.raises(ConfigError, match=r"keras_metadata\.pb has a config nested too deeply"):
        inspect_model_file(folder)


# --- .keras zip bombs ----------------------------------------------------------------------


def declare_size(path: Path, member: str, size: int, field_at: int = 24) -> None:
    """Rewrite `member`'s uncompressed size (or, at 20, its compressed size) in the zip's
    central directory (what zipfile reads), leaving its data as it is: a header that lies."""
    data = bytearray(path.read_bytes())
    at = 0
    while True:
        at = data.index(b"PK\x01\x02", at)
        name_length = struct.unpack_from("<H", data, at + 28)[0]
        if data[at + 46 : at + 46 + name_length].decode() == member:
            struct.pack_into("<I", data, at + field_at, size)
            path.write_bytes(bytes(data))
            return
        at += 4


def keras_with(path: Path, members: dict[str, bytes]) -> Path:
    write_keras(path, functional())
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name), data, zipfile.ZIP_DEFLATED)
    return path


def huge_member(p: Path) -> Path:
    path = keras_with(p / "m.keras", {"assets/vocab.txt": b"word\n" * 100})
    declare_size(path, "assets/vocab.txt", 3_200_000_000)
    return path


def sum_of_members(p: Path) -> Path:
    """Three members each under the limit, at a ratio a model's files have (6 MB of noise,
    stored, each declaring 1 GB): only their sum is too much."""
    path = write_keras(p / "m.keras", functional())
    noise = random.Random(0).randbytes(6_000_000)
    with zipfile.ZipFile(path, "a") as archive:
        for i in range(3):
            archive.writestr(f"assets/part{i}", noise, zipfile.ZIP_STORED)
    for i in range(3):
        declare_size(path, f"assets/part{i}", 1_000_000_000)
    return path


def stored_beyond_the_file(p: Path) -> Path:
    path = keras_with(p / "m.keras", {"assets/vocab.txt": b"word\n" * 100})
    declare_size(path, "assets/vocab.txt", 50_000_000, field_at=20)
    return path


def big_directory(p: Path) -> Path:
    path = write_keras(p / "m.keras", functional())
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, data.rfind(b"PK\x05\x06") + 12, 0xFFFFFFFF)  # a zip64 directory's marker
    path.write_bytes(bytes(data))
    return path


BOMBS = {
    "huge member": (huge_member, "member 'assets/vocab.txt' expands to 3,200,000,000 bytes (the limit is "
                                 f"{MAX_KERAS_BYTES:,})"),
    "members sum": (sum_of_members, f"its files expand to more than {MAX_KERAS_BYTES:,} bytes in all (the limit), "
                                    "reaching it at member 'assets/part2'"),
    "ratio": (lambda p: keras_with(p / "m.keras", {"assets/zeros.bin": bytes(32 * 1024 * 1024)}),
              "member 'assets/zeros.bin' expands 1,0"),
    "many members": (lambda p: keras_with(p / "m.keras", {f"assets/{i}": b"" for i in range(10_001)}),
                     "holds 10,003 files (a model has a few; the limit is 10,000)"),
    "compressed sizes": (stored_beyond_the_file, "its members claim 50,00"),
    "directory": (big_directory, "its zip directory is 4,294,967,295 bytes (a model's is far smaller; the limit is "
                                 "16,777,216)"),
    "parent": (lambda p: keras_with(p / "m.keras", {"assets/../../evil.py": b"x"}),
               "member 'assets/../../evil.py' would be extracted outside its folder"),
    "absolute": (lambda p: keras_with(p / "m.keras", {"/tmp/evil.py": b"x"}),
                 "member '/tmp/evil.py' would be extracted outside its folder"),
    "backslash": (lambda p: keras_with(p / "m.keras", {"..\\evil.py": b"x"}),
                  "member '..\\evil.py' would be extracted outside its folder"),
    "drive": (lambda p: keras_with(p / "m.keras", {"C:/evil.py": b"x"}),
              "member 'C:/evil.py' would be extracted outside its folder"),
}  # fmt: skip


@pytest.mark.parametrize("bomb", BOMBS)
def test_a_keras_zip_bomb_is_refused_while_planning_naming_the_member_and_limit(tmp_path, bomb):
    make, message = BOMBS[bomb]
    path = make(tmp_path)
    with pytest.raises(ConfigError) as refused:
        inspect_model_file(path)
    assert str(refused.value).startswith(f"model.path: {path}") and message in str(refused.value), str(refused.value)
    assert "\n" not in str(refused.value)


def test_a_member_whose_header_understates_it_is_caught_before_loading_having_inflated_no_more(tmp_path):
    """Planning trusts the declared sizes (it reads only the config); the loading step reads
    every member first, and zipfile stops each at its declared size and checks its CRC."""
    path = keras_with(tmp_path / "m.keras", {"assets/big.bin": b"\0" * (4 * 1024 * 1024)})
    declare_size(path, "assets/big.bin", 1000)
    inspect_model_file(path)  # the config is fine, the sizes look small
    with pytest.raises(DataError) as refused:
        verify_keras_archive(path)
    assert str(refused.value).startswith(f"model.path: {path}: member 'assets/big.bin' does not match its header (")
    inflated = 0
    with pytest.raises(zipfile.BadZipFile), zipfile.ZipFile(path) as archive, archive.open("assets/big.bin") as data:
        while chunk := data.read(100):  # what tf_keras's extractall reads, a chunk at a time
            inflated += len(chunk)
    assert inflated <= 1000


def test_an_honest_archive_passes_the_loading_check(tmp_path, monkeypatch):
    path = keras_with(tmp_path / "m.keras", {"assets/vocab.txt": b"word\n" * 1000})
    verify_keras_archive(path)
    monkeypatch.setattr(model_file.shutil, "disk_usage", lambda _: type("U", (), {"free": 10})())
    with pytest.raises(DataError, match=r"expands to [\d,]+ bytes, but the temporary folder .* has 10 free$"):
        verify_keras_archive(path)


@pytest.mark.parametrize(
    ("node", "looked_up"),
    [
        ({"module": "evil", "class_name": "Scale", "registered_name": "Evil", "config": {}}, "Evil"),
        ({"module": "keras.layers", "class_name": "Dense", "registered_name": None, "config": {"units": 2, "activation": {
            "module": "evil", "class_name": "function", "registered_name": "function", "config": "payload"}}}, "payload"),
    ],
)  # fmt: skip
def test_a_keras_file_cannot_make_loading_import_a_module(tmp_path, monkeypatch, node, looked_up):
    """tf_keras imports a .keras node's `module` when the name it looks up is not provided:
    that name (not the class_name beside it) must come from model.modules, or planning refuses."""
    (tmp_path / "my_layers.py").write_text("class Scale:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    layer = {**node, "name": "x"}
    info = inspect_model_file(write_keras(tmp_path / "m.keras", functional(layer)))
    assert info.custom_objects == (looked_up,) and info.custom_modules == ("evil",)
    with pytest.raises(ConfigError, match=f"^model.modules: none of my_layers defines {looked_up}, which "):
        model_file.check_custom_objects(info, ["my_layers"])

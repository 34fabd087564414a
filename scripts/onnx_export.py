#!/usr/bin/env python3
"""Export a sentence-transformers BERT folder (e.g. all-MiniLM-L6-v2) to ONNX, without torch.

Reads MODEL_DIR/config.json and model.safetensors (parsed with numpy only), builds the BertModel
graph with onnx.helper (opset 17, standard ops only, weights as initializers, Linear weights
pre-transposed) and writes MODEL_DIR/model.onnx: input_ids, attention_mask, token_type_ids
(int64 [batch, seq]) -> last_hidden_state (float32 [batch, seq, hidden]). Pooling is left to
the caller (tidemark-embed loads the file with ONNX Runtime).

Usage: scripts/onnx_export.py MODEL_DIR [--int8] [--check]
  --int8   also write MODEL_DIR/model_int8.onnx (dynamic quantization, int8 weights)
  --check  compare mean-pooled, normalised vectors of model.onnx (and model_int8.onnx when
           present) with crates/tidemark-embed/tests/fixtures/reference.json; exit 1 when an
           fp32 cosine is not above 0.9999
Needs only numpy and onnx; onnxruntime for --int8; onnxruntime and tokenizers for --check.
"""
import argparse
import json
import os
import struct
import sys
from pathlib import Path

try:
    import numpy as np
    from onnx import TensorProto, checker, helper, numpy_helper, save_model, shape_inference
except ImportError as e:
    sys.exit(f"onnx_export: cannot start: {e.name} is not installed (pip install numpy onnx)")

OPSET = 17
MASK_VALUE = float(np.finfo(np.float32).min)  # what current transformers adds for padding
REFERENCE = (Path(__file__).resolve().parents[1]
             / "crates/tidemark-embed/tests/fixtures/reference.json")
DTYPES = {"F32": "<f4", "F16": "<f2", "F64": "<f8", "I64": "<i8", "I32": "<i4"}


class ExportError(Exception):
    pass


def read_safetensors(path):
    """Return ({name: np.ndarray}, prefix) from a .safetensors file; a 'bert.' prefix is dropped."""
    data = Path(path).read_bytes()
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > len(data) - 8:
        raise ExportError(f"{path}: not a safetensors file (header longer than the file)")
    header = json.loads(data[8:8 + header_len])
    base = 8 + header_len
    tensors, prefix = {}, ""
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in DTYPES:
            raise ExportError(f"tensor {name}: unsupported dtype {info['dtype']}")
        start, end = info["data_offsets"]
        if base + end > len(data):
            raise ExportError(f"{path}: tensor {name} runs past the end of the file (truncated?)")
        raw = data[base + start:base + end]
        arr = np.frombuffer(raw, dtype=DTYPES[info["dtype"]]).reshape(info["shape"])
        if arr.dtype.kind == "f":
            arr = arr.astype(np.float32, copy=False)
        if name.startswith("bert."):
            name, prefix = name[len("bert."):], "bert."
        tensors[name] = arr
    return tensors, prefix


class Graph:
    """Collects nodes and initializers; every helper returns its output name."""

    def __init__(self, weights):
        self.weights, self.nodes, self.inits, self.count = weights, [], {}, 0

    def const(self, name, array):
        if name not in self.inits:
            self.inits[name] = numpy_helper.from_array(np.ascontiguousarray(array), name)
        return name

    def weight(self, name, transpose=False):
        if name not in self.weights:
            raise ExportError(f"tensor {name} missing from model.safetensors")
        w = self.weights[name]
        return self.const(name + (".T" if transpose else ""), w.T if transpose else w)

    def op(self, op_type, *inputs, **attrs):
        self.count += 1
        out = f"{op_type.lower()}_{self.count}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=out, **attrs))
        return out

    def linear(self, x, prefix):
        y = self.op("MatMul", x, self.weight(prefix + ".weight", transpose=True))
        return self.op("Add", y, self.weight(prefix + ".bias"))

    def layer_norm(self, x, prefix, eps):
        return self.op("LayerNormalization", x, self.weight(prefix + ".weight"),
                       self.weight(prefix + ".bias"), axis=-1, epsilon=eps)


def embeddings(g, eps):
    one = g.const("one_1d", np.array([1], np.int64))
    zero = g.const("zero_1d", np.array([0], np.int64))
    seq = g.op("Gather", g.op("Shape", "input_ids"), one, axis=0)  # [seq], for positions 0..seq
    positions = g.op("Slice", g.weight("embeddings.position_embeddings.weight"), zero, seq, zero)
    words = g.op("Gather", g.weight("embeddings.word_embeddings.weight"), "input_ids")
    types = g.op("Gather", g.weight("embeddings.token_type_embeddings.weight"), "token_type_ids")
    x = g.op("Add", g.op("Add", words, positions), types)
    return g.layer_norm(x, "embeddings.LayerNorm", eps)


def mask_bias(g):
    """[batch, seq] int64 mask -> [batch, 1, 1, seq] float additive bias."""
    m = g.op("Unsqueeze", "attention_mask", g.const("axes_12", np.array([1, 2], np.int64)))
    m = g.op("Cast", m, to=TensorProto.FLOAT)
    m = g.op("Sub", g.const("one_f", np.array(1.0, np.float32)), m)
    return g.op("Mul", m, g.const("mask_value", np.array(MASK_VALUE, np.float32)))


def attention(g, x, bias, prefix, heads, hidden):
    head_dim = hidden // heads
    split = g.const("split_heads", np.array([0, 0, heads, head_dim], np.int64))
    # q, v: [batch, heads, seq, head_dim]; k: [batch, heads, head_dim, seq] (pre-transposed)
    q, k, v = (g.op("Transpose", g.op("Reshape", g.linear(x, f"{prefix}.self.{name}"), split),
                    perm=perm)
               for name, perm in (("query", [0, 2, 1, 3]), ("key", [0, 2, 3, 1]),
                                  ("value", [0, 2, 1, 3])))
    scale = g.const("score_scale", np.array(np.sqrt(head_dim), np.float32))
    scores = g.op("Add", g.op("Div", g.op("MatMul", q, k), scale), bias)
    ctx = g.op("MatMul", g.op("Softmax", scores, axis=-1), v)
    ctx = g.op("Transpose", ctx, perm=[0, 2, 1, 3])
    ctx = g.op("Reshape", ctx, g.const("merge_heads", np.array([0, 0, hidden], np.int64)))
    return g.linear(ctx, prefix + ".output.dense")


def gelu(g, x):
    """Exact (erf) GELU: 0.5 * x * (1 + erf(x / sqrt(2)))."""
    e = g.op("Erf", g.op("Div", x, g.const("sqrt2", np.array(np.sqrt(2.0), np.float32))))
    y = g.op("Mul", x, g.op("Add", e, g.const("one_f", np.array(1.0, np.float32))))
    return g.op("Mul", y, g.const("half", np.array(0.5, np.float32)))


def build_model(weights, cfg):
    act, pos = cfg.get("hidden_act"), cfg.get("position_embedding_type", "absolute")
    if (act, pos) != ("gelu", "absolute"):
        raise ExportError("config.json: only hidden_act=gelu with absolute positions is supported")
    hidden, heads, eps = cfg["hidden_size"], cfg["num_attention_heads"], cfg["layer_norm_eps"]
    g = Graph(weights)
    x = embeddings(g, eps)
    bias = mask_bias(g)
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}"
        x = g.layer_norm(g.op("Add", attention(g, x, bias, p + ".attention", heads, hidden), x),
                         p + ".attention.output.LayerNorm", eps)
        h = g.linear(gelu(g, g.linear(x, p + ".intermediate.dense")), p + ".output.dense")
        x = g.layer_norm(g.op("Add", h, x), p + ".output.LayerNorm", eps)
    g.nodes[-1].output[0] = "last_hidden_state"  # the last LayerNorm is the graph output
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"])
              for n in ("input_ids", "attention_mask", "token_type_ids")]
    output = helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT,
                                           ["batch", "seq", hidden])
    graph = helper.make_graph(g.nodes, "bert", inputs, [output], list(g.inits.values()))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="tidemark onnx_export.py")
    model.ir_version = 8  # ONNX 1.13+, loadable by any ONNX Runtime that has opset 17
    checker.check_model(model)
    # Stored shapes let ONNX Runtime fuse residual Add + LayerNorm (SkipLayerNormalization).
    return shape_inference.infer_shapes(model, strict_mode=True)


def save_atomic(write, dest):
    tmp = dest.with_name(dest.name + ".tmp")
    try:
        write(str(tmp))
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def export(model_dir):
    cfg = json.loads((model_dir / "config.json").read_text())
    weights, prefix = read_safetensors(model_dir / "model.safetensors")
    print(f"read {len(weights)} tensors, name prefix {prefix or '(none)'}")
    model = build_model(weights, cfg)
    dest = model_dir / "model.onnx"
    save_atomic(lambda p: save_model(model, p), dest)
    print(f"wrote {dest} ({dest.stat().st_size / 1e6:.1f} MB, opset {OPSET})")


def quantize(model_dir):
    import logging
    from onnxruntime.quantization import QuantType, quantize_dynamic
    src, dest = model_dir / "model.onnx", model_dir / "model_int8.onnx"
    # Weights: int8, per output channel (per-tensor scales lose far more: cosine ~0.93 vs
    # ~0.99 to fp32); full 8-bit range (reduce_range gains nothing here). MatMul weights and the
    # Gather embedding tables are quantized; activations are quantized per run (uint8, one
    # scale per tensor), so padding in a batch slightly moves the result.
    logging.getLogger().setLevel(logging.ERROR)  # quiet the "consider pre-processing" hint
    save_atomic(lambda p: quantize_dynamic(str(src), p, weight_type=QuantType.QInt8,
                                           per_channel=True, reduce_range=False), dest)
    print(f"wrote {dest} ({dest.stat().st_size / 1e6:.1f} MB)")


def embed(session, tokenizer, texts):
    """Mean-pooled, L2-normalised sentence vectors, one padded batch."""
    enc = tokenizer.encode_batch(texts)
    feeds = {"input_ids": np.array([e.ids for e in enc], np.int64),
             "attention_mask": np.array([e.attention_mask for e in enc], np.int64),
             "token_type_ids": np.array([e.type_ids for e in enc], np.int64)}
    hidden = session.run(["last_hidden_state"], feeds)[0]
    mask = feeds["attention_mask"][..., None].astype(np.float32)
    pooled = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


def load_tokenizer(model_dir, max_len=256):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.enable_truncation(max_len)
    tok.enable_padding(pad_id=0, pad_token="[PAD]")  # pad to the batch's longest
    return tok


def check(model_dir, bound=0.9999):
    import onnxruntime as ort
    items = json.loads(REFERENCE.read_text())["items"]
    texts = [it["text"] for it in items]
    ref = np.array([it["embedding"] for it in items], np.float32)
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    tok = load_tokenizer(model_dir)
    def run(name):
        sess = ort.InferenceSession(str(model_dir / name), opts, providers=["CPUExecutionProvider"])
        return embed(sess, tok, texts)  # all texts in one padded batch, so the mask is exercised
    fp32 = run("model.onnx")
    cos = (fp32 * ref).sum(axis=1)
    int8 = run("model_int8.onnx") if (model_dir / "model_int8.onnx").exists() else None
    for i, text in enumerate(texts):
        int8_cos = "" if int8 is None else f"  int8-vs-fp32 {(int8[i] * fp32[i]).sum():.6f}"
        print(f"fp32 {cos[i]:.7f}{int8_cos}  {text[:50]!r}")
    print(f"min fp32 cosine to reference: {cos.min():.7f} (bound > {bound})")
    if int8 is not None:
        print(f"min int8-vs-fp32 cosine: {(int8 * fp32).sum(axis=1).min():.6f}")
    if cos.min() <= bound:
        raise ExportError(f"check failed: fp32 cosine {cos.min():.6f} is not above {bound}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--int8", action="store_true", help="also write model_int8.onnx")
    ap.add_argument("--check", action="store_true", help="compare with the reference vectors")
    args = ap.parse_args()
    steps = [("export", export), ("int8 quantization", quantize), ("check", check)]
    steps = [s for s, wanted in zip(steps, (True, args.int8, args.check)) if wanted]
    try:
        for step, run in steps:
            run(args.model_dir)
    except ExportError as e:
        sys.exit(f"onnx_export: {e}")
    except Exception as e:  # one line: what failed and why, no traceback
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        sys.exit(f"onnx_export: {step} failed: {type(e).__name__}: {why}")


if __name__ == "__main__":
    main()

"""The bench's reference embedder: ONNX Runtime's own Python API on the model folder's
model.onnx, the way a Python user runs all-MiniLM-L6-v2 with it: the Hugging Face tokenizer
(truncation at 256), batches in the order given padded to their longest text, mean pooling and
L2 normalisation in numpy. Run by `tidemark bench` (section `embedder`) with
`python -c <this> MODEL_DIR TEXTS_JSON BATCH ROUNDS`; prints {"short": docs/s, "long": docs/s}.
"""
import json
import os
import sys
import time

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer


def embed(session, tokenizer, texts):
    enc = tokenizer.encode_batch(texts)
    ids = np.array([e.ids for e in enc], dtype=np.int64)
    mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
    feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    hidden = session.run(None, feed)[0]
    m = mask[:, :, None].astype(np.float32)
    mean = (hidden * m).sum(1) / np.clip(m.sum(1), 1e-9, None)
    return mean / np.clip(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12, None)


def main():
    model_dir, texts_file, batch, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    with open(texts_file) as f:
        texts = json.load(f)
    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(os.path.join(model_dir, "model.onnx"), options)
    tokenizer = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tokenizer.enable_truncation(256)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    embed(session, tokenizer, texts["short"][:batch])  # warm-up
    out = {}
    for name in ("short", "long"):
        started = time.perf_counter()
        for _ in range(rounds):
            for i in range(0, len(texts[name]), batch):
                embed(session, tokenizer, texts[name][i:i + batch])
        out[name] = rounds * len(texts[name]) / max(time.perf_counter() - started, 1e-9)
    json.dump(out, sys.stdout)


main()

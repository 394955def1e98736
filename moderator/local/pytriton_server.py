"""Serve a Triton model repository written by ``moderator models triton-repo`` with PyTriton.

PyTriton bundles a real Triton Inference Server with only its Python backend, so this script
reads each model's ``config.pbtxt`` and binds a Python function that runs the model's ONNX file
with onnxruntime: same names, shapes, dynamic batching and wire protocol (gRPC and HTTP) as the
official Triton image serving the same repository with its onnxruntime backend.

Runs in its own virtual environment (PyTriton pins numpy<2), so it imports nothing from
``moderator``: ``python pytriton_server.py --repo REPO --grpc-port 8001 --http-port 8000``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
from google.protobuf import text_format
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.models.model import Model
from pytriton.triton import Triton, TritonConfig
from tritonclient.grpc import model_config_pb2

DTYPES = {
    model_config_pb2.TYPE_UINT8: np.uint8,
    model_config_pb2.TYPE_INT64: np.int64,
    model_config_pb2.TYPE_FP32: np.float32,
}


def read_config(model_dir: Path):
    config = model_config_pb2.ModelConfig()
    text_format.Parse((model_dir / "config.pbtxt").read_text(), config)
    return config


def carry_parameters(parameters: dict[str, dict[str, dict[str, str]]]) -> None:
    """PyTriton's public ModelConfig has no ``parameters``; pass each model's string parameters
    from its config.pbtxt (the model checksum the client checks) through its backend parameters."""
    original = Model._get_triton_model_config

    def with_parameters(self):
        config = original(self)
        config.backend_parameters.update(parameters.get(self.model_name, {}))
        return config

    Model._get_triton_model_config = with_parameters


def make_infer(session: ort.InferenceSession, input_name: str, output_name: str):
    @batch
    def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        return {output_name: session.run([output_name], {input_name: inputs[input_name]})[0]}

    return infer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--metrics-port", type=int, default=8002)
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0 = one per core)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    triton = Triton(config=TritonConfig(grpc_port=args.grpc_port, http_port=args.http_port, metrics_port=args.metrics_port))
    configs = {p: read_config(p) for p in sorted(args.repo.iterdir()) if (p / "config.pbtxt").is_file()}
    carry_parameters({c.name: {k: v.string_value for k, v in c.parameters.items()} for c in configs.values()})
    with triton:
        for model_dir, config in configs.items():
            session = ort.InferenceSession(str(model_dir / "1" / "model.onnx"), opts, providers=["CPUExecutionProvider"])
            (inp,), (out,) = config.input, config.output
            triton.bind(
                model_name=config.name,
                infer_func=make_infer(session, inp.name, out.name),
                inputs=[Tensor(name=inp.name, dtype=DTYPES[inp.data_type], shape=tuple(inp.dims))],
                outputs=[Tensor(name=out.name, dtype=DTYPES[out.data_type], shape=tuple(out.dims))],
                config=ModelConfig(
                    max_batch_size=config.max_batch_size,
                    batcher=DynamicBatcher(max_queue_delay_microseconds=config.dynamic_batching.max_queue_delay_microseconds),
                ),
                strict=True,
            )
        triton.serve()


if __name__ == "__main__":
    main()

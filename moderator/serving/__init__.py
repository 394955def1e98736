"""Serving topologies beyond one process: Ray Serve deployments and Triton model repositories.

Imported only by the backends that need them; ``ray`` and ``onnx`` are optional extras.
"""

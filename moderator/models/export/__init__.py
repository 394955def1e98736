"""Turn real CLIP-family checkpoints into model directories (the ``export`` extra: torch,
open_clip, transformers). Serving never imports this package.

- :func:`~moderator.models.export.openclip.export_open_clip`: an open_clip architecture with a
  pretrained tag already in the local cache, or a local checkpoint file (OpenAI CLIP, OpenCLIP,
  SigLIP, EVA-CLIP, MobileCLIP).
- :func:`~moderator.models.export.hf.export_hf`: a local Hugging Face ``CLIPModel`` or
  ``SiglipModel`` directory.

Both write ``image_encoder.onnx``/``text_encoder.onnx`` (dynamic batch, L2-normalised outputs),
``tokenizer.json`` tokenising as the checkpoint's own tokenizer, and ``manifest.json``, then check
the ONNX graphs against torch before returning.
"""

"""One inference layer for line images and ink: preprocess → backend → decode → ``Recognition``.

* :mod:`inkpack.infer.preprocess`: any image input → the model's ``[1, H, W]`` tensor;
  :mod:`inkpack.infer.ink_preprocess`: any ink input → per-point features (each the
  architecture's registry ``preprocess`` capability);
* :mod:`inkpack.infer.backend`: the forward pass, PyTorch (:class:`TorchBackend`,
  :class:`TorchInkBackend`) or ONNX Runtime (:class:`OrtBackend`, :class:`OrtInkBackend`), opened
  through :mod:`inkpack.models.io` by the model's input kind;
* :mod:`inkpack.infer.decode`: CTC output or a character's class scores → :class:`Recognition`
  (text, confidences, positions, candidates);
* :mod:`inkpack.infer.recognizer`: :class:`Recognizer` (batching, per-line runs for batch-dependent
  backends, a lock for backends that are not thread-safe) and :func:`open_recognizer`;
* :mod:`inkpack.infer.evaluate`: :func:`evaluate_lines`, CER/WER and speed on labelled lines;
  :mod:`inkpack.infer.files`: :class:`FileRecognizer`, files of any kind (images, ink, PAGE-XML)
  each read by the model for its kind (what ``inkpack evaluate`` / ``recognize`` run).

The Python API (``inkpack.load``), the service, the command line and ``report`` all use it.
Submodules are imported where they are used (this package's import pulls no torch).
"""

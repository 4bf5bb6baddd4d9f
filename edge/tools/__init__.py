"""The tools behind commands, built on the runtime: :mod:`.check_onnx` (``ffd check-onnx``),
:mod:`.envinfo` (``ffd env``), :mod:`.bench_pipeline` (``ffd bench``) and :mod:`.bench` (the timing and
memory helpers every benchmark uses; numpy and the standard library only, so the stream pipeline's
stats and the TensorRT runner's ``bench_engine`` use it too)."""

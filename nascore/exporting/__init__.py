"""Export a model as a deployable folder (weights, TorchScript, torch.export, ONNX, manifest), verify it, load it."""

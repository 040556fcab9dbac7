"""The architecture graph: its data, YAML documents, analysis (validation, shapes, costs), compilation to a
torch.fx module, structural hashing, scaling and rendering."""

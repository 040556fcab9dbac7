"""Files nascore reads and writes: bounded YAML reading, atomic file and folder writes, typed settings sections."""

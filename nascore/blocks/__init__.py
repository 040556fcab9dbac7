"""What a block is (spec, parameters), the shared layers blocks are built from, their cost formulas and
estimators, the block registry, and the public checks a plugin's own tests call."""

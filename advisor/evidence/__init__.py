"""Published tuned runs (rules/evidence/*.yaml) and the fit of the LR rules to them."""

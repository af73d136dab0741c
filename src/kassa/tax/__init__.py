"""Tax: rulesets as data files (``data/*.toml``), pure tax rules, EN 16931 tax totals."""

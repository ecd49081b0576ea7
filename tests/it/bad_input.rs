//! Bad input: signatures, paths, hosts, allowlists and configs that must be refused, with nothing reaching a target.

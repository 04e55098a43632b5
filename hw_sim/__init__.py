"""hw_sim: emulate ternary accelerators over exported keras_ternary models."""

"""The 5.5 spec: the typed surface (surface/), its rules, build_spec, the schema generator and the launch
record build_spec writes beside each spec."""

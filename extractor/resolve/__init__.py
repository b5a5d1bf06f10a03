"""The resolve room: from a checkpoint file to a fresh encoder that holds exactly its weights.

`checkpoint` loads safely (`converted`: the names TensorFlow and Paddle conversions
write); `prefixes` and `encoders` find the encoder's subtree and type;
`config_sources`, `known_configs` and `shape_config` find its configuration where the
user's files keep it (never a guess), `config_checks` and `architecture` check it;
`keys.compare_keys` matches weights to parameters; `model.build_model` builds the encoder.
"""

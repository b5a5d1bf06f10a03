"""The resolve room: from a checkpoint file to a fresh encoder that holds exactly its weights.

`opening.open_checkpoint` opens AllenNLP archives (`archives`, `allennlp`) and merges LoRA
weights (`lora`), then loads a file or directory with `checkpoint` (`safe_unpickle` reads
pickles without running them, `pickled_models` keeps a pickled model's configs,
`converted` reads TensorFlow and Paddle names, `state_dicts` finds and strips the
weights); `prefixes` and `encoders` find the encoder's subtree and type; `config_sources`,
`known_configs`, `config_lookup` and `shape_config` find its configuration where the user's
files keep it (never a guess), `config_checks` and `config_fit` check it, `architecture` chooses;
`keys.compare_keys` matches weights to parameters; `model.build_model` builds the encoder.
"""

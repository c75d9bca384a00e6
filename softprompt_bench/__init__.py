"""softprompt_bench: the experiment bench beside the plugin (not part of the installed package).

Embedded real models and labelled data, the recipes' config, method builders, rank-classification
scoring, metrics, resumable checkpoints and memory probes. It uses the plugin only through
`peft_softprompt_ext`'s public API; the plugin never imports it (tests/test_layout.py checks both).
Recipes and benchmarks import it from a checkout (they put the repository root on sys.path).
"""

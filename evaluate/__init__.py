"""Evaluation of audio-language models (`evaluate` command, teminal.evaluate.cli).

- zste.py       the five ZSTE tasks of docs/METHOD.md, CompA-order scores, seen/unseen class pairs,
                held-out caption wordings (`evaluate zste`)
- zeroshot.py   ESC-50 zero-shot classification (`evaluate zeroshot`)
- retrieval.py  AudioCaps / Clotho audio-text retrieval (`evaluate retrieval`)
- testset.py    test items of a pipeline build (every member checked against the catalog)
- training_data.py  what a checkpoint was trained on (seen pairs, trained wordings), from its
                provenance
- options.py    the commands' option choices (importable without torch)
- workers.py    decoding in worker processes while the model embeds
- metrics.py    accuracy with Wilson intervals, ranks, LAION-CLAP retrieval metrics
- embed.py      per-run text cache and batched audio embedding
- report.py     result JSON schema, tables, `evaluate compare`
- plots.py      PNG plots (order confusion, per-task bars)
"""

"""`vidqa eval`: accuracy of compression settings on multiple-choice video QA benchmarks, side by side.

`data` reads benchmarks and builds lmms-eval's prompts, `extract` reads the chosen option from an answer,
`runner` answers every (question, setting), `report` scores records (confidence intervals, McNemar's test,
the divergence gate) and `table` renders them. `lmms_plugin` lets lmms-eval run its tasks through vidqa.
"""

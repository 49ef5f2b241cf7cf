"""The compaction's code: the dataset as read (every delta applied) is the snapshot."""


def run(spark, inputs, params):
    return {"compacted": inputs["current"]}

"""The training library: what the train and optimize steps share.

    tasks        losses, metrics and output pairing per task (pure)
    optimizers   train.optimizer and train.schedule, as tables and as tf_keras objects
    builders     finding a model builder and calling it with the split's shapes
    feed         tf.data pipelines from a split on disk, streamed a batch at a time
    fit          compile, fit, evaluate (per output)
    trainer      one training run: strategy, precision, build, fit, save; its info
    strategies   distribution strategies and precision policies
    workers      multi-worker training in local processes
    compression  tensorflow-model-optimization methods (prune, cluster, qat)
    keras_io     saving and loading Keras models (user modules imported first)

Importing this package imports nothing heavy; TensorFlow comes in inside the functions that
need it, so planning can use the pure tables.
"""

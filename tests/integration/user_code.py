"""A user's own Keras code, as test projects write it to disk: custom layers that tf_keras
does not know by name (one unregistered, one registered), for model.modules."""

CUSTOM_LAYERS = '''\
import tf_keras as keras


class Scale(keras.layers.Layer):  # not registered: found by name through model.modules
    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


@keras.saving.register_keras_serializable(package="my_pkg")
class Offset(keras.layers.Layer):  # registered: found once the module is imported
    def build(self, shape):
        self.bias = self.add_weight(name="bias", shape=(shape[-1],), initializer="ones")

    def call(self, x):
        return x + self.bias
'''

"""A two-variable toy model for trainer tests: exact, predictable Adam steps."""
import keras
import tensorflow as tf


class Toy(keras.Model):
    """``pred = a * 1 + b * 1``: with the loss ``sum(pred)`` the gradient of each weight is a
    constant 1, so every Adam step moves a weight by exactly ``-lr`` (its learning rate)."""

    def __init__(self):
        super().__init__(name='toy')  # stable variable paths across instances
        self.a = self.add_weight(shape=(3,), initializer='zeros', name='a')
        self.b = self.add_weight(shape=(2,), initializer='zeros', name='b')

    def call(self, x, training=False):
        return tf.reduce_sum(self.a) + tf.reduce_sum(self.b) + 0.0 * tf.reduce_sum(x)

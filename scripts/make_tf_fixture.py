"""Builds small U-GAT-IT networks with the real TensorFlow, following the structure and variable
names of the TensorFlow release (taki0112/UGATIT, ``UGATIT.py`` and ``ops.py``), saves them with
``tf.compat.v1.train.Saver`` and records their outputs on fixed inputs. The files in
``tests/fixtures/tf/`` are what this script wrote; ``tests/test_tf_variant.py`` reads the
checkpoints with our Rust reader and compares our TF-variant networks with these outputs.

Run in its own venv (TensorFlow is not a dependency of the project)::

    python3 -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu tf-keras
    TF_USE_LEGACY_KERAS=1 /tmp/tfenv/bin/python scripts/make_tf_fixture.py --out tests/fixtures/tf

``tf.contrib`` is gone from TensorFlow 2, so its ``instance_norm`` (what the release uses in the
encoder) is written here the way contrib computed it: moments over H, W, then
``batch_normalization`` with learned ``beta``/``gamma``. Everything else goes through the same
``tf.compat.v1`` calls as the release (``tf.layers.conv2d``/``dense``, ``tf.nn.moments``,
``resize_nearest_neighbor``, the spectral norm's power iteration with its ``u`` variable).
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

v1 = tf.compat.v1
v1.disable_eager_execution()
INIT = v1.random_normal_initializer(mean=0.0, stddev=0.02)


# -- layers (ops.py) ----------------------------------------------------------------------------------
def spectral_norm(w):
    shape = w.shape.as_list()
    w = tf.reshape(w, [-1, shape[-1]])
    u = v1.get_variable("u", [1, shape[-1]], initializer=v1.random_normal_initializer(), trainable=False)
    v_hat = tf.nn.l2_normalize(tf.matmul(u, tf.transpose(w)))
    u_hat = tf.nn.l2_normalize(tf.matmul(v_hat, w))
    u_hat, v_hat = tf.stop_gradient(u_hat), tf.stop_gradient(v_hat)
    sigma = tf.matmul(tf.matmul(v_hat, w), tf.transpose(u_hat))
    with tf.control_dependencies([u.assign(u_hat)]):
        return tf.reshape(w / sigma, shape)


def conv(x, channels, kernel=4, stride=2, pad=0, sn=False, scope="conv_0"):
    with v1.variable_scope(scope):
        if pad > 0:
            # (kernel - stride) odd: the release pads `pad` on top/left and the rest below/right.
            lo = pad
            hi = pad if (kernel - stride) % 2 == 0 else kernel - stride - pad
            x = tf.pad(x, [[0, 0], [lo, hi], [lo, hi], [0, 0]], mode="REFLECT")
        if sn:
            w = v1.get_variable("kernel", [kernel, kernel, x.get_shape()[-1], channels], initializer=INIT)
            x = tf.nn.conv2d(x, spectral_norm(w), strides=[1, stride, stride, 1], padding="VALID")
            bias = v1.get_variable("bias", [channels], initializer=v1.constant_initializer(0.0))
            return tf.nn.bias_add(x, bias)
        return v1.layers.conv2d(x, channels, kernel, strides=stride, kernel_initializer=INIT, use_bias=True)


def cam_fc(x, sn=False, reuse=False, scope="CAM_logit"):
    """``fully_connected_with_w``: the logit, and the weights (kernel + bias) for the attention."""
    with v1.variable_scope(scope, reuse=reuse):
        x = v1.layers.flatten(x)
        channels = x.get_shape().as_list()[-1]
        if sn:
            w = v1.get_variable("kernel", [channels, 1], tf.float32, initializer=INIT)
            bias = v1.get_variable("bias", [1], initializer=v1.constant_initializer(0.0))
            x = tf.matmul(x, spectral_norm(w)) + bias
        else:
            x = v1.layers.dense(x, units=1, kernel_initializer=INIT, use_bias=True)
            w = v1.get_variable("kernel", shape=[channels, 1])
            bias = v1.get_variable("bias", shape=[1])
        return x, tf.gather(tf.transpose(tf.nn.bias_add(w, bias)), 0)


def dense(x, units, scope):
    with v1.variable_scope(scope):
        return v1.layers.dense(v1.layers.flatten(x), units=units, kernel_initializer=INIT, use_bias=True)


def instance_norm(x, scope="instance_norm"):
    """tf.contrib.layers.instance_norm(center=True, scale=True, epsilon=1e-5)."""
    with v1.variable_scope(scope):
        ch = x.shape[-1]
        beta = v1.get_variable("beta", [ch], initializer=v1.zeros_initializer())
        gamma = v1.get_variable("gamma", [ch], initializer=v1.ones_initializer())
        mean, var = tf.nn.moments(x, [1, 2], keepdims=True)
        return tf.nn.batch_normalization(x, mean, var, beta, gamma, 1e-5)


def ada_lin(x, gamma, beta, smoothing=True, scope="instance_layer_norm"):
    with v1.variable_scope(scope):
        ch, eps = x.shape[-1], 1e-5
        ins_mean, ins_var = tf.nn.moments(x, axes=[1, 2], keepdims=True)
        x_ins = (x - ins_mean) / tf.sqrt(ins_var + eps)
        ln_mean, ln_var = tf.nn.moments(x, axes=[1, 2, 3], keepdims=True)
        x_ln = (x - ln_mean) / tf.sqrt(ln_var + eps)
        rho = v1.get_variable("rho", [ch], initializer=v1.constant_initializer(1.0))
        if smoothing:
            rho = tf.clip_by_value(rho - tf.constant(0.1), 0.0, 1.0)
        return (rho * x_ins + (1 - rho) * x_ln) * gamma + beta


def lin(x, scope):
    with v1.variable_scope(scope):
        ch, eps = x.shape[-1], 1e-5
        ins_mean, ins_var = tf.nn.moments(x, axes=[1, 2], keepdims=True)
        x_ins = (x - ins_mean) / tf.sqrt(ins_var + eps)
        ln_mean, ln_var = tf.nn.moments(x, axes=[1, 2, 3], keepdims=True)
        x_ln = (x - ln_mean) / tf.sqrt(ln_var + eps)
        rho = v1.get_variable("rho", [ch], initializer=v1.constant_initializer(0.0))
        gamma = v1.get_variable("gamma", [ch], initializer=v1.constant_initializer(1.0))
        beta = v1.get_variable("beta", [ch], initializer=v1.constant_initializer(0.0))
        return (rho * x_ins + (1 - rho) * x_ln) * gamma + beta


def resblock(x_init, channels, scope):
    with v1.variable_scope(scope):
        with v1.variable_scope("res1"):
            x = tf.nn.relu(instance_norm(conv(x_init, channels, 3, 1, 1)))
        with v1.variable_scope("res2"):
            x = instance_norm(conv(x, channels, 3, 1, 1))
        return x + x_init


def ada_resblock(x_init, channels, gamma, beta, scope):
    with v1.variable_scope(scope):
        with v1.variable_scope("res1"):
            x = tf.nn.relu(ada_lin(conv(x_init, channels, 3, 1, 1), gamma, beta))
        with v1.variable_scope("res2"):
            x = ada_lin(conv(x, channels, 3, 1, 1), gamma, beta)
        return x + x_init


# -- networks (UGATIT.py) -----------------------------------------------------------------------------
def generator(x_init, ch, n_res, light, batch, scope):
    channel = ch
    with v1.variable_scope(scope):
        x = tf.nn.relu(instance_norm(conv(x_init, channel, 7, 1, 3, scope="conv"), scope="ins_norm"))
        for i in range(2):
            x = conv(x, channel * 2, 3, 2, 1, scope=f"conv_{i}")
            x = tf.nn.relu(instance_norm(x, scope=f"ins_norm_{i}"))
            channel *= 2
        for i in range(n_res):
            x = resblock(x, channel, scope=f"resblock_{i}")
        gap_logit, w = cam_fc(tf.reduce_mean(x, axis=[1, 2]), scope="CAM_logit")
        x_gap = x * w
        gmp_logit, w = cam_fc(tf.reduce_max(x, axis=[1, 2]), reuse=True, scope="CAM_logit")
        x_gmp = x * w
        cam_logit = tf.concat([gap_logit, gmp_logit], axis=-1)
        x = tf.nn.relu(conv(tf.concat([x_gap, x_gmp], axis=-1), channel, 1, 1, scope="conv_1x1"))
        heatmap = tf.squeeze(tf.reduce_sum(x, axis=-1))
        width = ch * n_res
        with v1.variable_scope("MLP"):
            h = tf.reduce_mean(x, axis=[1, 2]) if light else x
            for i in range(2):
                h = tf.nn.relu(dense(h, width, f"linear_{i}"))
            gamma = tf.reshape(dense(h, width, "gamma"), [batch, 1, 1, width])
            beta = tf.reshape(dense(h, width, "beta"), [batch, 1, 1, width])
        for i in range(n_res):
            x = ada_resblock(x, channel, gamma, beta, scope=f"adaptive_resblock{i}")
        for i in range(2):
            _, h_, w_, _ = x.get_shape().as_list()
            x = v1.image.resize_nearest_neighbor(x, size=[h_ * 2, w_ * 2])
            x = conv(x, channel // 2, 3, 1, 1, scope=f"up_conv_{i}")
            x = tf.nn.relu(lin(x, scope=f"layer_ins_norm_{i}"))
            channel //= 2
        x = tf.tanh(conv(x, 3, 7, 1, 3, scope="G_logit"))
        return x, cam_logit, heatmap


def discriminator_branch(x_init, ch, n_strided, scope):
    with v1.variable_scope(scope):
        channel = ch
        x = tf.nn.leaky_relu(conv(x_init, channel, 4, 2, 1, sn=True, scope="conv_0"), 0.2)
        for i in range(1, n_strided):
            x = tf.nn.leaky_relu(conv(x, channel * 2, 4, 2, 1, sn=True, scope=f"conv_{i}"), 0.2)
            channel *= 2
        x = tf.nn.leaky_relu(conv(x, channel * 2, 4, 1, 1, sn=True, scope="conv_last"), 0.2)
        channel *= 2
        gap_logit, w = cam_fc(tf.reduce_mean(x, axis=[1, 2]), sn=True, scope="CAM_logit")
        x_gap = x * w
        gmp_logit, w = cam_fc(tf.reduce_max(x, axis=[1, 2]), sn=True, reuse=True, scope="CAM_logit")
        x_gmp = x * w
        cam_logit = tf.concat([gap_logit, gmp_logit], axis=-1)
        x = tf.nn.leaky_relu(conv(tf.concat([x_gap, x_gmp], axis=-1), channel, 1, 1, scope="conv_1x1"), 0.2)
        heatmap = tf.squeeze(tf.reduce_sum(x, axis=-1))
        x = conv(x, 1, 4, 1, 1, sn=True, scope="D_logit")
        return x, cam_logit, heatmap


def discriminator(x, ch, n_dis, scope):
    """Local: n_dis - 3 strided convs (+ conv_last); global: n_dis - 1 (the release's ranges)."""
    with v1.variable_scope(scope):
        local = discriminator_branch(x, ch, n_dis - 3, "local")
        global_ = discriminator_branch(x, ch, n_dis - 1, "global")
        return local, global_


# -- the fixture ------------------------------------------------------------------------------------
def randomise(sess, rng):
    """Non-trivial values everywhere: rho over [0, 1] (so the smoothing clip at 0.1 matters),
    gammas around 1, and each spectral-norm ``u`` at its kernel's top singular vector (so the
    power iteration TF runs on every call, once per CAM use, is a fixed point: outputs do not
    depend on how TF orders the two reads of the CAM layer's ``u``)."""
    variables = {v.op.name: v for v in v1.global_variables()}
    values = {}
    for name, var in variables.items():
        shape = var.shape.as_list()
        leaf = name.rsplit("/", 1)[-1]
        if leaf == "rho":
            value = rng.uniform(0.0, 1.0, shape)
        elif leaf == "gamma":
            value = 1.0 + 0.2 * rng.standard_normal(shape)
        elif leaf in ("beta", "bias"):
            value = 0.1 * rng.standard_normal(shape)
        elif leaf == "u" or "Adam" in name or "power" in name:
            continue
        else:
            value = rng.standard_normal(shape) * 0.2
        values[name] = value.astype(np.float32)
    for name in variables:
        if name.endswith("/u"):
            kernel = values[name[: -len("u")] + "kernel"]
            w = kernel.reshape(-1, kernel.shape[-1])
            _, _, vt = np.linalg.svd(w.astype(np.float64), full_matrices=False)
            u = vt[0:1] * np.sign(vt[0, np.argmax(np.abs(vt[0]))])
            values[name] = u.astype(np.float32)
    for name, value in values.items():
        variables[name].load(value, sess)
    return values


def fixture_inputs(seed, batch, size):
    """The two NHWC input batches of a fixture, drawn from its seed (tests draw the same)."""
    rng = np.random.default_rng(1000 + seed)
    return [rng.uniform(-1, 1, (batch, size, size, 3)).astype(np.float32) for _ in range(2)]


def build(out_dir, light, size, ch=2, n_res=4, n_dis=6, batch=2, adam=False, seed=0):
    tag = f"{'light' if light else 'full'}_{size}"
    folder = os.path.join(out_dir, tag)
    os.makedirs(folder, exist_ok=True)
    v1.reset_default_graph()
    x_a = v1.placeholder(tf.float32, [batch, size, size, 3])
    x_b = v1.placeholder(tf.float32, [batch, size, size, 3])
    a2b = generator(x_a, ch, n_res, light, batch, "generator_B")
    b2a = generator(x_b, ch, n_res, light, batch, "generator_A")
    d_a = discriminator(x_a, ch, n_dis, "discriminator_A")
    d_b = discriminator(x_b, ch, n_dis, "discriminator_B")
    if adam:  # the released checkpoint also holds Adam's slots and beta powers
        loss = tf.reduce_mean(a2b[0]) + tf.reduce_mean(b2a[0]) + tf.reduce_mean(d_a[0][0]) + tf.reduce_mean(d_b[1][0])
        v1.train.AdamOptimizer(1e-4, beta1=0.5, beta2=0.999).minimize(loss)
    rng = np.random.default_rng(seed)
    with v1.Session() as sess:
        sess.run(v1.global_variables_initializer())
        randomise(sess, rng)
        v1.train.Saver().save(sess, os.path.join(folder, "UGATIT.model"), global_step=1000, write_meta_graph=False)
        inputs = dict(zip(("x_a", "x_b"), fixture_inputs(seed, batch, size)))
        feed = {x_a: inputs["x_a"], x_b: inputs["x_b"]}
        names = {
            "a2b": a2b, "b2a": b2a,
            "dA_local": d_a[0], "dA_global": d_a[1], "dB_local": d_b[0], "dB_global": d_b[1],
        }  # fmt: skip
        outputs = dict(inputs)
        for key, (out, cam, heat) in names.items():
            o, c, h = sess.run([out, cam, heat], feed)
            outputs[f"{key}.out"], outputs[f"{key}.cam_logit"], outputs[f"{key}.heatmap"] = o, c, h
    # The `checkpoint` file records where the Saver wrote; name a folder of another machine, as
    # a downloaded checkpoint does (the reader then finds the files beside it).
    with open(os.path.join(folder, "checkpoint"), "w") as f:
        for key in ("model_checkpoint_path", "all_model_checkpoint_paths"):
            f.write(f'{key}: "/home/author/checkpoint/{tag}/UGATIT.model-1000"\n')
    del outputs["x_a"], outputs["x_b"]  # the tests draw them again from the seed (fixture_inputs)
    np.savez_compressed(os.path.join(folder, "outputs.npz"), **outputs)
    meta = {"light": light, "img_size": size, "ch": ch, "n_res": n_res, "n_dis": n_dis, "batch": batch,
            "adam": adam, "seed": seed, "tensorflow": tf.__version__, "layout": "NHWC"}  # fmt: skip
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(meta, f, indent=2)
    print(f"wrote {folder}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "tf"))
    args = ap.parse_args()
    # ch 2 keeps all three under 5 MB (the global discriminator's conv_last alone has
    # 16·(16·ch)·(32·ch) weights); n_res must be 4 (the MLP is ch·n_res wide, AdaLIN scales ch·4
    # channels). One checkpoint keeps Adam's slots and beta powers, as the release's does.
    build(args.out, light=True, size=96, adam=True)
    build(args.out, light=True, size=128, seed=1)
    build(args.out, light=False, size=96, seed=2)


if __name__ == "__main__":
    main()

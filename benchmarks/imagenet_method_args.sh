# The ImageNet generator's method options (classifier, architecture, losses, optimiser), sourced by
# benchmarks/train_imagenet_generator.sh (the shipped runs) and benchmarks/imagenet_training_grid.sh
# (its variants add options on top), so the grid's "same options as shipped" stays true when they change.
# Needs SHARED (the class names only: no image is read).
# shellcheck shell=bash
METHOD_ARGS=(--classifier openvino_synthcalib.train_generator.classifiers:efficientnet_lite0
  --classifier-mean 0.5 --classifier-std 0.5 --classifier-size 224
  --class-names "$SHARED/datasets/imagenet-sample/classes.tsv"
  --g-channels 256,192,128,64,32,16 --g-class-dim 128 --max-params 3000000
  --batch 32 --lr-g 1e-3 --beta1 0.5 --w-ce 0.1 --w-div 0.1 --jitter 16)

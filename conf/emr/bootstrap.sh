#!/bin/bash
# EMR bootstrap action, run on every node before applications start:
# installs the project wheel and its Python dependencies for python3.11, the model
# weights into a Keras cache, and the profiles into /opt/fruits/conf.
# Usage (create-cluster): Path=s3://BUCKET/artifacts/bootstrap.sh,Args=[s3://BUCKET/artifacts]
set -euxo pipefail
ARTIFACTS="${1:?give the S3 prefix of the uploaded artifacts (make emr-package)}"

sudo mkdir -p /opt/fruits/conf /opt/fruits/keras/models
aws s3 cp --recursive "$ARTIFACTS/conf/" /opt/fruits/conf/ --exclude "*" --include "*.yaml"
aws s3 cp "$ARTIFACTS/requirements-emr.txt" /tmp/requirements-emr.txt
aws s3 cp --recursive "$ARTIFACTS/wheel/" /tmp/fruits-wheel/

# pyspark and delta come with EMR: install everything else, then the wheel without deps.
sudo python3.11 -m pip install --quiet -r /tmp/requirements-emr.txt
sudo python3.11 -m pip install --quiet --no-deps /tmp/fruits-wheel/*.whl

# The ImageNet weights, if uploaded (else the gold job downloads them through Keras).
if aws s3 ls "$ARTIFACTS/models/" >/dev/null 2>&1; then
  sudo aws s3 cp --recursive "$ARTIFACTS/models/" /opt/fruits/keras/models/
fi
echo 'export KERAS_HOME=/opt/fruits/keras' | sudo tee /etc/profile.d/fruits.sh

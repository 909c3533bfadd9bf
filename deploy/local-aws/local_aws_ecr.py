"""ECR patches of the sdop local AWS emulator."""
from moto.ecr.models import Image as _EcrImage
from moto.ecr.models import Repository as _EcrRepository


# ECR: an image's digest is the sha256 of its manifest as pushed (moto hashes the layer
# digests, which gives every layer-less test manifest sha256 of "").
def _manifest_digest(self):
    import hashlib
    self._image_digest = "sha256:" + hashlib.sha256(self.image_manifest.encode()).hexdigest()


_EcrImage._create_digest = _manifest_digest


# PutImageScanningConfiguration: `scanOnPush` is a boolean member whose Smithy default is false,
# and the AWS SDKs generated from the Smithy models leave a member at its default out of the
# request (aws-sdk-ecr's ser_image_scanning_configuration writes `scanOnPush` only when true),
# so "turn scan on push off" arrives as `imageScanningConfiguration: {}`, which AWS applies as
# false. moto 5.2.5 (moto/ecr/models.py Repository._update_image_scanning_configuration)
# ignores an empty configuration and keeps scan on push on.
_orig_update_scanning = _EcrRepository._update_image_scanning_configuration


def _update_scanning_with_default(self, image_scanning_configuration):
    if image_scanning_configuration is not None:
        image_scanning_configuration = {"scanOnPush": False, **image_scanning_configuration}
    return _orig_update_scanning(self, image_scanning_configuration)


_EcrRepository._update_image_scanning_configuration = _update_scanning_with_default

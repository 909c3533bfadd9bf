"""S3 in the sdop local AWS emulator: API names of S3 requests (for the call counter and faults)
and atomic conditional writes."""
import io
import threading

S3_WRITE_LOCK = threading.Lock()  # makes moto's conditional check + write atomic
S3_BUCKET_SUB = {"tagging": "BucketTagging", "versioning": "BucketVersioning",
                 "policy": "BucketPolicy", "acl": "BucketAcl", "cors": "BucketCors",
                 "lifecycle": "BucketLifecycleConfiguration", "encryption": "BucketEncryption",
                 "location": "BucketLocation", "notification": "BucketNotificationConfiguration",
                 # S3 API reference names: PutPublicAccessBlock, PutBucketOwnershipControls.
                 "publicAccessBlock": "PublicAccessBlock", "ownershipControls": "BucketOwnershipControls"}



def s3_api(method, path, host, qs, headers):
    host, path = host.split(":")[0], path.lstrip("/")
    if host.endswith(".localhost") or (".s3." in host and not host.startswith("s3.")):
        bucket, key = host.split(".")[0], path  # virtual-host style
    else:
        bucket, _, key = path.partition("/")
    if not bucket:
        return "ListBuckets"
    if key:
        if "uploadId" in qs:
            return {"PUT": "UploadPart", "POST": "CompleteMultipartUpload",
                    "DELETE": "AbortMultipartUpload"}.get(method, "ListParts")
        if "uploads" in qs:
            return "CreateMultipartUpload"
        if "tagging" in qs:
            return {"GET": "GetObjectTagging", "PUT": "PutObjectTagging"}.get(method, "DeleteObjectTagging")
        if method == "PUT" and "HTTP_X_AMZ_COPY_SOURCE" in headers:
            return "CopyObject"
        return {"GET": "GetObject", "HEAD": "HeadObject", "PUT": "PutObject",
                "DELETE": "DeleteObject"}.get(method, "PostObject")
    for sub, name in S3_BUCKET_SUB.items():
        if sub in qs:
            return {"GET": "Get", "PUT": "Put", "DELETE": "Delete"}.get(method, method) + name
    if method == "GET":
        return "ListMultipartUploads" if "uploads" in qs else (
            "ListObjectsV2" if qs.get("list-type") == ["2"] else "ListObjects")
    if method == "POST" and "delete" in qs:
        return "DeleteObjects"
    return {"HEAD": "HeadBucket", "PUT": "CreateBucket", "DELETE": "DeleteBucket"}.get(method, method)


# S3 writes whose outcome depends on (or changes) an object's current state. Moto checks
# If-Match / If-None-Match and then writes in separate steps, so two racing conditional
# PUTs could both pass the check; these run one at a time (any key, any bucket).
S3_OBJECT_WRITES = {"s3:PutObject", "s3:CopyObject", "s3:DeleteObject", "s3:DeleteObjects",
                    "s3:CompleteMultipartUpload"}


def buffer_body(environ):
    """Read the request body up front so a slow uploader never holds S3_WRITE_LOCK."""
    stream = environ["wsgi.input"]
    if environ.get("wsgi.input_terminated"):  # chunked transfer: read to the end
        body = stream.read()
    else:
        body = stream.read(int(environ.get("CONTENT_LENGTH") or 0))
    environ["wsgi.input"] = io.BytesIO(body)

"""What the all-in-one-ai images do inside SageMaker, in miniature: the training image
(sagemaker-training toolkit -> train.py -> webui.sh --train -> the fork's webui.py train() ->
the DreamBooth extension) and the inference image (serve -> webui.sh -> modules/shared.py at
import -> webui()). A contract model written from the upstream facts, not upstream code; each
rule names its source. Versions: fork xieyongliang/stable-diffusion-webui 9f7dec70 (default)
and 47dd0bbc, extension xieyongliang/sd_dreambooth_extension 249de82, all-in-one-ai
sagemaker/stable-diffusion-webui/train.py (the version with --dreambooth-config-id).

Outcomes follow what the real job or endpoint would show:
- train.py's own argparse failure exits 2 -> the toolkit fails the job (Failed, AlgorithmError).
- Anything that fails after train.py started webui.sh is invisible to SageMaker: train.py
  ends with os.system(cmd) and drops the status, so the job ends Completed without a checkpoint.
- An inference container that dies at start never passes the ping health check.
The container's own error is kept in LOGS (GET /_sdop/containers), as CloudWatch would."""
import fnmatch
import io
import json
import math
import random
import re
import shlex
import tarfile
from collections import defaultdict
from urllib.parse import urlparse

LOGS = defaultdict(list)  # job or endpoint name -> container log lines
LOADED = {}               # endpoint name -> checkpoint the inference container loaded

# ------------------------------------------------------------------ training
# sagemaker-training: these hyperparameters are the toolkit's own, never passed to the script
# (sagemaker_training/params.py SAGEMAKER_HYPERPARAMETERS, prefix "sagemaker_").
TOOLKIT_PREFIX = "sagemaker_"
# train.py's argparse options (all-in-one-ai sagemaker/stable-diffusion-webui/train.py, the
# version that adds --dreambooth-config-id; no --lora-models-s3uri yet).
TRAIN_PY_OPTIONS = {"train-task", "train-args", "embeddings-s3uri", "hypernetwork-s3uri",
                    "sd-models-s3uri", "db-models-s3uri", "ckpt", "region-name", "username",
                    "api-endpoint", "dreambooth-config-id"}
# Fork 9f7dec70 webui.py train(), task dreambooth: keys read with [...].
TRAIN_ARGS_KEYS = ["db_create_new_db_model", "db_lora_model_name", "db_lora_weight",
                   "db_lora_txt_weight", "db_train_imagic_only", "db_use_subdir",
                   "db_custom_model_name", "db_train_wizard_person", "db_train_wizard_object",
                   "db_performance_wizard"]
NEW_MODEL_KEYS = ["db_new_model_name", "db_new_model_src", "db_new_model_scheduler",
                  "db_create_from_hub", "db_new_model_url", "db_new_model_token",
                  "db_new_model_extract_ema"]
# Extension 249de82 dreambooth/db_config.py DreamboothConfig.__init__: 104 positional
# parameters before concepts_list (and **kwargs); the indices webui.py and the trainer use.
CONFIG_MAX_POSITIONAL = 105
AT = {"gradient_accumulation_steps": 11, "learning_rate": 16, "max_train_steps": 22,
      "num_train_epochs": 26, "save_embedding_every": 34, "train_batch_size": 42,
      "use_concepts": 45}
CONCEPTS_AT, CONCEPT_LEN, INSTANCE_DIR = 50, 18, 6
CHANNELS = "/opt/ml/input/data/"
IMAGE_EXT = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


class Crash(Exception):
    """The container process died with this message (webui.sh's python, not SageMaker)."""


class AlgorithmError(Exception):
    """train.py itself exited non-zero: the toolkit fails the job."""


def toolkit_value(raw):
    """sagemaker-training environment.read_hyperparameters: json.loads, raw string if that fails."""
    try:
        return json.loads(raw)
    except (ValueError, TypeError):
        return raw


def toolkit_arg(value):
    """sagemaker-training mapping.to_cmd_args: a dict becomes k=v,..., a list a,b; else str()."""
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def channel_files(job, s3):
    """channel -> {path relative to /opt/ml/input/data/<channel>/: bytes} as SageMaker mounts an
    S3Prefix channel in File mode: every object whose key starts with the prefix, at its path
    after the prefix's last '/' (upstream's `models` channel relies on this: the checkpoint key
    without its extension brings `<name>.ckpt` and `<name>.yaml`)."""
    mounted = {}
    for ch in job.input_data_config or []:
        uri = ch["DataSource"]["S3DataSource"]["S3Uri"]
        parts = urlparse(uri)
        prefix = parts.path.lstrip("/")
        base = prefix[: prefix.rfind("/") + 1]
        files = {}
        bucket = s3.buckets.get(parts.netloc)
        if bucket is not None:
            for key in list(bucket.keys.keys()):
                if key.startswith(prefix) and not key.endswith("/"):
                    files[key[len(base):]] = bucket.keys[key].value
        mounted[ch["ChannelName"]] = files
    return mounted


def train_py_argv(hp):
    """The toolkit's command line for train.py, and train.py's parse of it."""
    args = {}
    for key, raw in (hp or {}).items():
        if key.startswith(TOOLKIT_PREFIX):
            continue
        if key not in TRAIN_PY_OPTIONS:
            raise AlgorithmError(f"train.py: error: unrecognized arguments: --{key} "
                                 f"{toolkit_arg(toolkit_value(raw))}")
        args[key] = toolkit_arg(toolkit_value(raw))
    return args


def webui_command(args):
    """train.py's shell line (only the flags webui.py's train() reads are kept here)."""
    cmd = ("bash webui.sh --port 8080 --listen --xformers --train --train-task {0} "
           "--train-args '{1}' --ckpt {2} --ckpt-dir /opt/ml/input/data/models "
           "--region-name {3} --api-endpoint {4}").format(
        args.get("train-task"), args.get("train-args"),
        args.get("ckpt", "/opt/ml/input/data/models/768-v-ema.ckpt"),
        args.get("region-name"), args.get("api-endpoint", ""))
    for key in ("embeddings-s3uri", "hypernetwork-s3uri", "sd-models-s3uri", "db-models-s3uri",
                "username", "dreambooth-config-id"):
        if args.get(key, "") != "":
            cmd += f" --{key} {args[key]}"
    return cmd


def webui_flags(cmd):
    """/bin/sh word splitting, then webui.sh's argparse (modules/shared.py) of the flags."""
    try:
        words = shlex.split(cmd)
    except ValueError as err:
        raise Crash(f"sh: syntax error in train.py's command line ({err})")
    flags, i = {}, words.index("--port")
    booleans = {"--listen", "--xformers", "--train"}
    while i < len(words):
        word = words[i]
        if not word.startswith("--"):
            raise Crash(f"webui.py: error: unrecognized arguments: {word}")
        if word in booleans:
            flags[word[2:]] = True
            i += 1
            continue
        if i + 1 >= len(words) or words[i + 1].startswith("--"):
            raise Crash(f"webui.py: error: argument {word}: expected one argument")
        flags[word[2:]] = words[i + 1]
        i += 2
    return flags


def checkpoint_match(files, search):
    """modules/sd_models.get_closet_checkpoint_match: checkpoints (.ckpt/.safetensors) in
    --ckpt-dir whose title contains the search text, shortest title first."""
    titles = sorted((f for f in files if f.endswith((".ckpt", ".safetensors"))), key=len)
    return next((t for t in titles if search and search in t), None)


def train_dreambooth(job, flags, mounted, log, checkpoint_bytes, no_checkpoint):
    """Fork 9f7dec70 webui.py train(), task dreambooth, with extension 249de82. Returns the
    files it writes: {s3 uri: bytes}."""
    if flags.get("train-task") != "dreambooth":
        raise Crash("Incorrect training task")  # webui.py: print + exit(-1)
    try:
        train_args = json.loads(flags["train-args"])
    except ValueError as err:
        raise Crash(f"json.decoder.JSONDecodeError in json.loads(cmd_opts.train_args): {err}")
    try:
        settings = train_args["train_dreambooth_settings"]
        for key in TRAIN_ARGS_KEYS:
            settings[key]
        if not settings["db_create_new_db_model"]:
            raise Crash(f"KeyError/FileNotFoundError: no existing DreamBooth model "
                        f"{settings.get('db_model_name')!r} in --dreambooth-models-path")
        for key in NEW_MODEL_KEYS:
            settings[key]
    except KeyError as err:
        raise Crash(f"KeyError: {err} (train_args['train_dreambooth_settings'][...])")
    except TypeError as err:
        raise Crash(f"TypeError: {err}")
    # sd_to_diff.extract_checkpoint over --ckpt-dir (the `models` channel). Its failure
    # return has 10 values where webui.py unpacks 8.
    models = mounted.get("models", {})
    source = checkpoint_match(models, str(settings["db_new_model_src"]))
    if source is None:
        raise Crash("Unable to find base checkpoint. ValueError: too many values to unpack "
                    f"(expected 8) (db_new_model_src={settings['db_new_model_src']!r}, "
                    f"--ckpt-dir holds {sorted(models)})")
    # The stand-in checkpoints carry no tensors; the emulator takes a .yaml beside the source
    # (as SD 2.x checkpoints are published) as "the text encoder is 1024 wide" (v2).
    v2 = source.rsplit(".", 1)[0] + ".yaml" in models
    model_name = "".join(c for c in str(settings["db_new_model_name"])
                         if c.isalnum() or c in "._- ")  # db_config.sanitize_name
    # The config: /opt/ml/input/data/config/{id}.json, else GET {api}/sd/models?... .
    config_id = flags.get("dreambooth-config-id", "")
    content = mounted.get("config", {}).get(f"{config_id}.json")
    if content is None:
        api = flags.get("api-endpoint", "")
        if not re.match(r"https?://[^/]", api):
            raise Crash(f"requests.exceptions.MissingSchema: Invalid URL '{api}/sd/models': "
                        f"No scheme supplied (config {config_id}.json is not in the config channel)")
        raise Crash(f"NameError: name 'config_dict' is not defined (config {config_id}.json is "
                    f"not in the config channel and {api} did not serve it)")
    try:
        config = json.loads(content)
    except ValueError as err:
        raise Crash(f"JSONDecodeError in the DreamBooth config: {err}")
    if not isinstance(config, list):
        raise Crash("TypeError: the DreamBooth config must be the positional list "
                    "DreamboothConfig(*config_dict) takes (this image predates the dict format)")
    if not 50 <= len(config) <= CONFIG_MAX_POSITIONAL:
        raise Crash(f"IndexError/TypeError: DreamboothConfig(*config_dict) with {len(config)} "
                    f"values (webui.py writes config_dict[49]; __init__ takes at most "
                    f"{CONFIG_MAX_POSITIONAL})")

    def number(name, kind=int):
        value = config[AT[name]]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                (kind is int and not isinstance(value, int)):
            raise Crash(f"TypeError: {name} (config[{AT[name]}]) is {value!r}")
        return value
    steps, batch = number("max_train_steps"), number("train_batch_size")
    number("learning_rate", float)
    accumulation = number("gradient_accumulation_steps")
    if batch < 1 or accumulation < 1:
        raise Crash("ZeroDivisionError/ValueError: train_batch_size and "
                    "gradient_accumulation_steps must be at least 1")
    # db_concept.Concept.is_valid: a concept counts when its instance_data_dir exists.
    images = 0
    for c in range(3):
        at = CONCEPTS_AT + c * CONCEPT_LEN + INSTANCE_DIR
        data_dir = config[at] if at < len(config) else ""
        if not data_dir:
            continue
        if not data_dir.startswith(CHANNELS):
            raise Crash(f"c{c + 1}_instance_data_dir {data_dir!r} is outside {CHANNELS}: "
                        "nothing is mounted there")
        channel, _, sub = data_dir[len(CHANNELS):].partition("/")
        if channel not in mounted:
            raise Crash(f"c{c + 1}_instance_data_dir {data_dir!r}: the job has no channel "
                        f"{channel!r} (channels: {sorted(mounted)})")
        found = [f for f in mounted[channel] if f.startswith(sub)
                 and f.lower().endswith(IMAGE_EXT)]
        if not found:
            raise Crash(f"c{c + 1}_instance_data_dir {data_dir!r} holds no images")
        images += len(found)
    if images == 0:
        raise Crash("No valid concepts: every instance_data_dir is empty (the trainer's "
                    "dataset is empty)")
    # train_dreambooth.py: with max_train_steps < 1 the steps come from the epochs.
    if steps < 1:
        per_epoch = math.ceil(math.ceil(images / batch) / accumulation)
        steps = number("num_train_epochs") * per_epoch
    total = steps * batch  # revision += train_batch_size per step, from 0 for a new model
    if no_checkpoint:
        raise Crash("CUDA out of memory (injected: complete_without_checkpoint)")
    # compile_checkpoint: <save name>_<revision>.ckpt in --ckpt-dir (a sub-dir with
    # db_use_subdir; the custom name if set), .yaml beside it for v2. Intermediate saves every
    # save_embedding_every steps.
    save_name = settings["db_custom_model_name"] or model_name
    folder = f"{save_name}/" if settings["db_use_subdir"] else ""
    every = config[AT["save_embedding_every"]] or 0
    revisions = [r for r in range(every, total, every)] if every else []
    written = {}
    for revision in revisions + [total]:
        written[f"{folder}{save_name}_{revision}.ckpt"] = \
            random.Random(f"{job.training_job_name}/{revision}").randbytes(checkpoint_bytes)
        if v2:
            written[f"{folder}{save_name}_{revision}.yaml"] = models[source.rsplit(".", 1)[0] + ".yaml"]
    log.append(f"Training completed, total steps: {total}")
    # webui.py: upload_s3files(sd_models_s3uri, '{ckpt_dir}/{db_model_name}_*.ckpt|.yaml'),
    # flat glob; upload_s3folder(db_models_s3uri + name, ...). Errors are printed, not raised.
    uploads = {}
    sd_uri = flags.get("sd-models-s3uri")
    if not sd_uri:
        log.append("AttributeError: 'NoneType' object has no attribute 'find' (no --sd-models-s3uri)")
    else:
        for pattern in (f"{model_name}_*.yaml", f"{model_name}_*.ckpt"):
            for path, body in written.items():
                if "/" not in path and fnmatch.fnmatch(path, pattern):
                    uploads[f"{sd_uri}{path}"] = body
    db_uri = flags.get("db-models-s3uri")
    if db_uri:
        uploads[f"{db_uri}{model_name}/db_config.json"] = json.dumps(
            {"model_name": model_name, "revision": total}).encode()
    return uploads


def run_training(job, s3, checkpoint_bytes, faults):
    """Runs the training image on `job`. Returns ("Failed", reason) or ("Completed", None);
    the container's uploads are written to S3 (a missing bucket is a printed ClientError)."""
    name = job.training_job_name
    log = LOGS[name]
    knob = faults.get("complete_without_checkpoint") or []
    no_checkpoint = name in knob or "*" in knob
    try:
        args = train_py_argv(job.hyper_parameters)
    except AlgorithmError as err:
        log.append(str(err))
        return "Failed", ("AlgorithmError: ExecuteUserScriptError: Command \"/opt/conda/bin/python "
                          f"train.py ...\" exit status 2: {err}")
    try:
        flags = webui_flags(webui_command(args))
        uploads = train_dreambooth(job, flags, channel_files(job, s3), log,
                                   checkpoint_bytes, no_checkpoint)
    except Crash as err:
        log.append(str(err))
        log.append("train.py: os.system() returned non-zero; the status is not checked")
        return "Completed", None
    for uri, body in uploads.items():
        parts = urlparse(uri)
        if parts.netloc not in s3.buckets:
            log.append(f"botocore.exceptions.ClientError: NoSuchBucket ({uri})")
            continue
        s3.put_object(parts.netloc, parts.path.lstrip("/"), body)
        log.append(f"uploaded {uri}")
    return "Completed", None


# ----------------------------------------------------------------- inference
HEALTH = ("The primary container for production variant AllTraffic did not pass the ping "
          "health check. Please check CloudWatch logs for this endpoint.")
# Fork commits whose modules/shared.py reads os.environ['api_endpoint'] at import and GETs
# {api_endpoint}/sd/industrialmodel (from c25a16cd/2fe03e24 of 2023-03-04/05 through 9f7dec70
# and later); 47dd0bbc (2023-03-01) and 2109a904 read it only with --pureui.
API_AT_IMPORT_REVISIONS_BEFORE = ("47dd0bbc", "2109a904")


WORKSHOP_REVISION = "9f7dec70"


def image_revision(image_uri, ecr_backends, account, external):
    """The fork commit built into the image: the OCI annotation org.opencontainers.image.revision
    of the pushed manifest (the workshop's 9f7dec70 when it has none); `external` for an image
    this ECR does not hold (config external_image_revision)."""
    m = re.match(r"[^.]+\.dkr\.ecr\.([^.]+)\.[^/]+/([^@:]+)(?:@(.+)|:(.+))?$", image_uri or "")
    if not m:
        return external
    region, repo, digest, tag = m.groups()
    try:
        images = ecr_backends[account][region].repositories[repo].images
    except KeyError:
        return external
    for image in images:
        if (digest and image.get_image_digest() == digest) or (tag and tag in image.image_tags):
            annotations = json.loads(image.image_manifest).get("annotations") or {}
            return annotations.get("org.opencontainers.image.revision", WORKSHOP_REVISION)
    return external


def model_files(container, s3):
    """Paths under /opt/ml/model/: the members of model.tar.gz, or an uncompressed prefix."""
    source = (container.get("ModelDataSource") or {}).get("S3DataSource") or {}
    uri = source.get("S3Uri") or container.get("ModelDataUrl") or ""
    parts = urlparse(uri)
    bucket = s3.buckets.get(parts.netloc)
    key = parts.path.lstrip("/")
    # Known gap (README): model data that is not in this S3 is not checked; AWS would fail
    # the download. None: contents unknown.
    if bucket is None:
        return None
    if key.endswith("/") or source.get("CompressionType") == "None":
        return [k[len(key):] for k in bucket.keys.keys() if k.startswith(key)] or None
    if key not in bucket.keys:
        return None
    try:
        with tarfile.open(fileobj=io.BytesIO(bucket.keys[key].value), mode="r:*") as tar:
            return [m.name.removeprefix("./") for m in tar.getmembers() if m.isfile()]
    except tarfile.TarError as err:
        raise Crash(f"model data {uri} is not a tar.gz: {err}")


def start_inference(endpoint_name, model, s3, ecr_backends, account, external_revision):
    """Starts the inference image for one model. Returns a FailureReason, or None when it
    serves (LOADED records the checkpoint it loaded)."""
    log = LOGS[endpoint_name]
    container = model.primary_container or {}
    env = container.get("Environment") or {}
    revision = image_revision(container.get("Image"), ecr_backends, account, external_revision)
    try:
        if not revision.startswith(API_AT_IMPORT_REVISIONS_BEFORE):
            # modules/shared.py, `if not cmd_opts.train:` at import.
            if "api_endpoint" not in env:
                raise Crash("KeyError: 'api_endpoint' (modules/shared.py at import)")
            api = env["api_endpoint"]
            if not re.match(r"https?://[^/]", api):
                raise Crash(f"requests.exceptions.MissingSchema: Invalid URL "
                            f"'{api}/sd/industrialmodel': No scheme supplied")
        files = model_files(container, s3)
        if files is None:
            log.append("model data not in this S3: contents not checked")
            LOADED[endpoint_name] = (env.get("ckpt") or "").removeprefix("/opt/ml/model/")
            return None
        # serve: --ckpt-dir /opt/ml/model/Stable-diffusion (copied into the container's models/).
        checkpoints = sorted(f for f in files if f.startswith("Stable-diffusion/")
                             and f.endswith((".ckpt", ".safetensors")))
        wanted = (env.get("ckpt") or "").removeprefix("/opt/ml/model/")
        if wanted and wanted not in files:
            # modules/sd_models.list_models: printed, then a fallback is loaded.
            log.append(f"Checkpoint in --ckpt argument not found: /opt/ml/model/{wanted}")
            wanted = ""
        if not wanted and not checkpoints:
            raise Crash("No checkpoints found. Can't run without a checkpoint. The program "
                        "will exit. (modules/sd_models.select_checkpoint)")
        LOADED[endpoint_name] = wanted or checkpoints[0]
        log.append(f"Loaded checkpoint {LOADED[endpoint_name]} (fork {revision})")
        return None
    except Crash as err:
        log.append(str(err))
        return f"{HEALTH} (container: {err})"


def report():
    return {"logs": dict(LOGS), "loaded": dict(LOADED)}


def clear():
    LOGS.clear()
    LOADED.clear()


# --------------------------------------------------------------- invocations
# The inference image's POST /invocations, as fork 9f7dec70 serves it (47dd0bbc has the same
# handler): modules/api/api.py invocations() L402-453 with the request model
# modules/api/models.py InvocationsRequest L244-250, run by FastAPI 0.90.1
# (requirements_versions.txt). Returns (HTTP status, response body) as the container answers.
#
# Sampler names the handler accepts: fork 9f7dec70 modules/sd_samplers.py all_samplers_map is
# keyed by SamplerData.name only (aliases such as k_euler_a are not accepted), over
# samplers_k_diffusion plus DDIM and PLMS; api.py validate_sampler_name() raises
# HTTPException(404, "Sampler not found") for any other name.
SAMPLERS = frozenset([
    "Euler a", "Euler", "LMS", "Heun", "DPM2", "DPM2 a", "DPM++ 2S a", "DPM++ 2M", "DPM++ SDE",
    "DPM fast", "DPM adaptive", "LMS Karras", "DPM2 Karras", "DPM2 a Karras",
    "DPM++ 2S a Karras", "DPM++ 2M Karras", "DPM++ SDE Karras", "DDIM", "PLMS"])
# api.py invocations(): the tasks it dispatches; anything else raises NotImplementedError.
INVOCATION_TASKS = ("text-to-image", "image-to-image", "extras-single-image",
                    "extras-batch-images", "sd-models")
# Starlette's ServerErrorMiddleware answer to an exception FastAPI does not handle.
SERVER_ERROR = (500, b"Internal Server Error")
# botocore handlers.validate_bucket_name (VALID_BUCKET): the client-side check boto3 makes
# before any S3 call inside the container.
VALID_BUCKET = re.compile(r"^[a-zA-Z0-9.\-_]{1,255}$")


class HandlerError(Exception):
    """An exception inside invocations()' try block: printed (traceback.print_exc) and the
    handler returns None."""


def _unprocessable(errors):
    # FastAPI 0.90.1 RequestValidationError -> 422 {"detail": [...]} (the default handler;
    # webui() mounts the API on gradio's app without webui.py's api_only() 422 handler).
    return 422, json.dumps({"detail": errors}).encode()


def _str_field(value):
    """pydantic 1.10 str_validator: str, or int/float/Decimal coerced; else 'str type expected'."""
    return isinstance(value, (str, int, float))


def _request_errors(req):
    """pydantic validation of InvocationsRequest (only the fields the handler reads)."""
    if not isinstance(req, dict):
        if req is None:
            return [{"loc": ["body"], "msg": "field required", "type": "value_error.missing"}]
        return [{"loc": ["body"], "msg": "value is not a valid dict", "type": "type_error.dict"}]
    errors = []

    def bad(loc, msg, typ):
        errors.append({"loc": ["body", *loc], "msg": msg, "type": typ})
    # task: str (required); username: Optional[str]
    if "task" not in req:
        bad(["task"], "field required", "value_error.missing")
    elif req["task"] is None:
        bad(["task"], "none is not an allowed value", "type_error.none.not_allowed")
    elif not _str_field(req["task"]):
        bad(["task"], "str type expected", "type_error.str")
    if req.get("username") is not None and not _str_field(req["username"]):
        bad(["username"], "str type expected", "type_error.str")
    payload = req.get("txt2img_payload")
    if payload is not None and not isinstance(payload, dict):
        bad(["txt2img_payload"], "value is not a valid dict", "type_error.dict")
    elif isinstance(payload, dict):
        # StableDiffusionTxt2ImgProcessingAPI: the processing.py __init__ parameters
        # (script_args: str = None, sampler_name: str = None, ints with defaults) plus
        # sampler_index: str = "Euler" (models.py L101-105, not Optional).
        for key in ("script_args", "sampler_name"):
            if payload.get(key) is not None and not _str_field(payload[key]):
                bad(["txt2img_payload", key], "str type expected", "type_error.str")
        if "sampler_index" in payload:
            if payload["sampler_index"] is None:
                bad(["txt2img_payload", "sampler_index"], "none is not an allowed value",
                    "type_error.none.not_allowed")
            elif not _str_field(payload["sampler_index"]):
                bad(["txt2img_payload", "sampler_index"], "str type expected", "type_error.str")
        for key in ("width", "height", "batch_size", "n_iter", "steps", "seed"):
            value = payload.get(key)
            if value is None:
                continue
            try:
                int(value)
            except (TypeError, ValueError):
                bad(["txt2img_payload", key], "value is not a valid integer",
                    "type_error.integer")
    return errors


def _png(width, height):
    """A black greyscale PNG of width x height: the stand-in for a generated image."""
    import struct
    import zlib

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    raw = (b"\x00" + b"\x00" * width) * height  # filter byte 0 per row, grey level 0
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def _txt2img(req, env, s3, seed_source):
    """invocations() for task text-to-image, then api.py text2imgapi()."""
    import base64
    # download_s3files(cmd_opts.embeddings_s3uri, ...): serve passes --embeddings-s3uri only
    # when the model env has embeddings_s3uri (all-in-one-ai sagemaker/stable-diffusion-webui/
    # serve), else the default '' (modules/shared.py L97). download_s3files slices the URI as
    # bucket = s3uri[5:s3uri.find('/', 5)], then lists the bucket with boto3.
    uri = str(env.get("embeddings_s3uri", ""))
    bucket = uri[5:uri.find("/", 5)]
    if not VALID_BUCKET.match(bucket):
        raise HandlerError(f"botocore.exceptions.ParamValidationError: Invalid bucket name "
                           f"\"{bucket}\" (download_s3files(embeddings_s3uri={uri!r}); the "
                           "model env has no usable embeddings_s3uri)")
    if s3.buckets.get(bucket) is None:
        raise HandlerError(f"botocore.exceptions.ClientError: NoSuchBucket when calling "
                           f"ListObjects (download_s3files(embeddings_s3uri={uri!r}))")
    payload = req.get("txt2img_payload")
    if payload is None:
        raise HandlerError("AttributeError: 'NoneType' object has no attribute 'sampler_name' "
                           "(no txt2img_payload)")
    # text2imgapi: validate_sampler_name(sampler_name or sampler_index); sampler_index
    # defaults to "Euler" (models.py L101-105). Its HTTPException is inside invocations()' try.
    sampler = payload.get("sampler_name") or str(payload.get("sampler_index", "Euler"))
    if sampler not in SAMPLERS:
        raise HandlerError(f"fastapi.HTTPException: 404 Sampler not found ({sampler!r})")
    # processing.py L124: script_args = json.loads(script_args) if not None; text2imgapi then
    # calls p.scripts.run(p, *p.script_args); ScriptRunner.run (modules/scripts.py L305-309)
    # returns None for script index args[0] == 0, and process_images() runs.
    raw_args = payload.get("script_args")
    if raw_args is None:
        raise HandlerError("TypeError: modules.scripts.ScriptRunner.run() argument after * must "
                           "be an iterable, not NoneType (txt2img_payload.script_args omitted)")
    try:
        script_args = json.loads(str(raw_args))
    except ValueError as err:
        raise HandlerError(f"json.decoder.JSONDecodeError: {err} (txt2img_payload.script_args)")
    if not isinstance(script_args, list):
        raise HandlerError(f"TypeError: script_args {raw_args!r} is not a JSON list")
    if not script_args:
        raise HandlerError("IndexError: tuple index out of range (script_args is [])")
    if script_args[0] != 0:
        # Known gap (README): the fork's selectable scripts are not modelled.
        raise HandlerError(f"script index {script_args[0]!r}: selectable scripts are not "
                           "modelled by the emulator (use 0)")
    # StableDiffusionProcessing defaults (processing.py L81): 512x512, 50 steps, batch 1.
    width, height = int(payload.get("width") or 512), int(payload.get("height") or 512)
    batch, n_iter = int(payload.get("batch_size") or 1), int(payload.get("n_iter") or 1)
    if width < 1 or height < 1 or batch < 1 or n_iter < 1:
        raise HandlerError(f"RuntimeError: cannot generate {batch}x{n_iter} images of "
                           f"{width}x{height}")
    seed = payload.get("seed")
    seed = -1 if seed is None else int(float(seed))
    if seed == -1:
        seed = random.Random(seed_source).randrange(2**32)
    prompt = str(payload.get("prompt", ""))
    png = base64.b64encode(_png(width, height)).decode()
    count = batch * n_iter  # text2imgapi sets do_not_save_grid: no grid image is added
    # processing.py Processed.js(): a JSON string (a subset of its keys here).
    info = {"prompt": prompt, "all_prompts": [prompt] * count,
            "negative_prompt": str(payload.get("negative_prompt") or ""),
            "seed": seed, "all_seeds": [seed + i for i in range(count)],
            "width": width, "height": height, "sampler_name": sampler,
            "cfg_scale": payload.get("cfg_scale", 7.0), "steps": int(payload.get("steps") or 50),
            "batch_size": batch}
    # TextToImageResponse(images=b64images, parameters=vars(txt2imgreq), info=processed.js())
    return {"images": [png] * count, "parameters": payload, "info": json.dumps(info)}


def invoke_async(endpoint_name, model, body, content_type, s3, ecr_backends, account,
                 external_revision, seed_source=""):
    """POST /invocations with `body` on the inference container of `model` (the endpoint's
    serving variant). Returns (HTTP status, response bytes); 2xx is a success."""
    log = LOGS[endpoint_name]
    container = model.primary_container or {}
    env = container.get("Environment") or {}
    revision = image_revision(container.get("Image"), ecr_backends, account, external_revision)
    # FastAPI 0.90.1 routing.get_request_handler: the body is parsed as JSON when there is no
    # Content-Type or it is application/json (or */*+json); otherwise the raw bytes go to
    # validation. SageMaker forwards the invocation's ContentType; when the caller sends none
    # (the SageMaker Python SDK's predict_async, which all-in-one-ai's notebook and backend
    # use) the container gets none.
    req = None
    if body:
        kind = (content_type or "").split(";")[0].strip().lower()
        if kind and not (kind == "application/json" or
                         (kind.startswith("application/") and kind.endswith("+json"))):
            req = bytes(body)
        else:
            try:
                req = json.loads(body)
            except UnicodeDecodeError:
                log.append("invocation: 400 There was an error parsing the body")
                return 400, json.dumps({"detail": "There was an error parsing the body"}).encode()
            except ValueError as err:
                log.append(f"invocation: 422 JSONDecodeError {err}")
                return _unprocessable([{"loc": ["body", getattr(err, "pos", 0)],
                                        "msg": str(err), "type": "value_error.jsondecode"}])
    errors = _request_errors(req)
    if errors:
        log.append(f"invocation: 422 {errors}")
        return _unprocessable(errors)
    try:
        username = req.get("username")
        # api.py L411: `if username != ''` (an omitted username is None): the user lookup
        # os.environ['api_endpoint'] and requests.post(f'{api_endpoint}/sd/user').
        if username != "":
            api = env.get("api_endpoint")
            if api is None:
                raise HandlerError("KeyError: 'api_endpoint' (user lookup for username "
                                   f"{username!r})")
            if not re.match(r"https?://[^/]", str(api)):
                raise HandlerError(f"requests.exceptions.MissingSchema: Invalid URL "
                                   f"'{api}/sd/user': No scheme supplied (username {username!r})")
            # Known gap (README): the emulator serves no all-in-one-ai API.
            raise HandlerError(f"requests.exceptions.ConnectionError: {api}/sd/user (the "
                               f"emulator serves no all-in-one-ai API; username {username!r})")
        task = str(req["task"])
        if task not in INVOCATION_TASKS:
            raise HandlerError(f"NotImplementedError (task {task!r})")
        if task != "text-to-image":
            raise HandlerError(f"task {task!r} is not modelled by the emulator")
        response = _txt2img(req, env, s3, seed_source)
    except HandlerError as err:
        # The handler printed the traceback and returned None; FastAPI 0.90.1
        # serialize_response() validates None against the non-Optional response_model Union
        # (create_response_field(required=True)), raises ValidationError, and Starlette answers
        # 500.
        log.append(f"invocation (fork {revision}): Traceback: {err}")
        return SERVER_ERROR
    log.append(f"invocation (fork {revision}): text-to-image, {len(response['images'])} image(s)")
    return 200, json.dumps(response).encode()

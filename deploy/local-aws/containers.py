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
import base64
import fnmatch
import hashlib
import io
import json
import math
import random
import re
import shlex
import struct
import tarfile
import time
import zlib
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


def select_checkpoint(files, env):
    """The checkpoint the inference container loads from its model data (paths under
    /opt/ml/model/), or None when there is none: the model env's `ckpt` when the package holds
    it, else the first checkpoint under Stable-diffusion/ (serve: --ckpt-dir
    /opt/ml/model/Stable-diffusion, copied into the container's models/; modules/sd_models.py
    list_models prints a --ckpt that is not found and select_checkpoint falls back)."""
    checkpoints = sorted(f for f in files if f.startswith("Stable-diffusion/")
                         and f.endswith((".ckpt", ".safetensors")))
    wanted = (env.get("ckpt") or "").removeprefix("/opt/ml/model/")
    if wanted and wanted in files:
        return wanted
    return checkpoints[0] if checkpoints else None


def model_file(container, s3, path):
    """The bytes of one file of the model data (a model.tar.gz member or an object under an
    uncompressed prefix), or None when this S3 does not hold it."""
    source = (container.get("ModelDataSource") or {}).get("S3DataSource") or {}
    uri = source.get("S3Uri") or container.get("ModelDataUrl") or ""
    parts = urlparse(uri)
    bucket = s3.buckets.get(parts.netloc)
    key = parts.path.lstrip("/")
    if bucket is None:
        return None
    if key.endswith("/") or source.get("CompressionType") == "None":
        obj = bucket.keys.get(key + path)
        return None if obj is None else obj.value
    if key not in bucket.keys:
        return None
    try:
        with tarfile.open(fileobj=io.BytesIO(bucket.keys[key].value), mode="r:*") as tar:
            for member in tar.getmembers():
                if member.isfile() and member.name.removeprefix("./") == path:
                    return tar.extractfile(member).read()
    except tarfile.TarError:
        return None
    return None


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
        wanted = (env.get("ckpt") or "").removeprefix("/opt/ml/model/")
        if wanted and wanted not in files:
            # modules/sd_models.list_models: printed, then a fallback is loaded.
            log.append(f"Checkpoint in --ckpt argument not found: /opt/ml/model/{wanted}")
        loaded = select_checkpoint(files, env)
        if loaded is None:
            raise Crash("No checkpoints found. Can't run without a checkpoint. The program "
                        "will exit. (modules/sd_models.select_checkpoint)")
        LOADED[endpoint_name] = loaded
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


def _json(obj):
    """A FastAPI 0.90.1 response body: starlette 0.23 JSONResponse.render is json.dumps(content,
    ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")) in UTF-8."""
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, indent=None,
                      separators=(",", ":")).encode("utf-8")


def _unprocessable(errors):
    # FastAPI 0.90.1 RequestValidationError -> 422 {"detail": [...]} (the default handler;
    # webui() mounts the API on gradio's app without webui.py's api_only() 422 handler).
    return 422, _json({"detail": errors})


# The text-to-image request model, StableDiffusionTxt2ImgProcessingAPI (fork 9f7dec70
# modules/api/models.py PydanticModelGenerator): the __init__ parameters of
# StableDiffusionProcessingTxt2Img and then StableDiffusionProcessing (processing.py L81 and
# L634) merged as {**txt2img, **base} (so denoising_strength keeps its place but takes the base
# default 0), minus API_NOT_ALLOWED, plus sampler_index: str = "Euler". Every field but
# sampler_index is Optional[annotation] with the __init__ default (pydantic does not validate
# defaults, so 0 stays an int). Order = the model's field order = vars(txt2imgreq)'s order.
TXT2IMG_FIELDS = (
    ("enable_hr", "bool", False), ("denoising_strength", "float", 0),
    ("firstphase_width", "int", 0), ("firstphase_height", "int", 0), ("prompt", "str", ""),
    ("styles", "list[str]", None), ("seed", "int", -1), ("subseed", "int", -1),
    ("subseed_strength", "float", 0), ("seed_resize_from_h", "int", -1),
    ("seed_resize_from_w", "int", -1), ("sampler_name", "str", None), ("batch_size", "int", 1),
    ("n_iter", "int", 1), ("steps", "int", 50), ("cfg_scale", "float", 7.0),
    ("width", "int", 512), ("height", "int", 512), ("restore_faces", "bool", False),
    ("tiling", "bool", False), ("negative_prompt", "str", None), ("eta", "float", None),
    ("s_churn", "float", 0.0), ("s_tmax", "float", None), ("s_tmin", "float", 0.0),
    ("s_noise", "float", 1.0), ("override_settings", "dict", None), ("script_args", "str", None),
    ("sampler_index", "str", "Euler"))


class _Invalid(Exception):
    def __init__(self, msg, typ):
        super().__init__(msg)
        self.msg, self.typ = msg, typ


def _coerce(kind, value):
    """pydantic 1.10's validators for the field kinds above (int_validator, float_validator,
    str_validator, bool_validator, list and dict)."""
    if kind == "int":
        try:
            return int(value)
        except (TypeError, ValueError):
            raise _Invalid("value is not a valid integer", "type_error.integer")
    if kind == "float":
        try:
            return float(value)
        except (TypeError, ValueError):
            raise _Invalid("value is not a valid float", "type_error.float")
    if kind == "str":
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)):
            return str(value)
        raise _Invalid("str type expected", "type_error.str")
    if kind == "bool":
        if value is True or value is False:
            return value
        if isinstance(value, str) and value.lower() in ("0", "off", "f", "false", "n", "no"):
            return False
        if isinstance(value, str) and value.lower() in ("1", "on", "t", "true", "y", "yes"):
            return True
        if isinstance(value, (int, float)) and value in (0, 1):
            return bool(value)
        raise _Invalid("value could not be parsed to a boolean", "type_error.bool")
    if kind == "list[str]":
        if not isinstance(value, list):
            raise _Invalid("value is not a valid list", "type_error.list")
        return [_coerce("str", v) for v in value]
    if not isinstance(value, dict):
        raise _Invalid("value is not a valid dict", "type_error.dict")
    return dict(value)


def _txt2img_request(payload):
    """-> (the validated StableDiffusionTxt2ImgProcessingAPI as vars() gives it, errors)."""
    fields, errors = {}, []
    for name, kind, default in TXT2IMG_FIELDS:
        if name not in payload:
            fields[name] = default
            continue
        value = payload[name]
        if value is None:
            if name == "sampler_index":  # str, not Optional (models.py additional_fields)
                errors.append({"loc": ["body", "txt2img_payload", name],
                               "msg": "none is not an allowed value",
                               "type": "type_error.none.not_allowed"})
            fields[name] = None
            continue
        try:
            fields[name] = _coerce(kind, value)
        except _Invalid as err:
            loc = ["body", "txt2img_payload", name]
            errors.append({"loc": loc, "msg": err.msg, "type": err.typ})
    return fields, errors


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
        errors += _txt2img_request(payload)[1]
    return errors


# ------------------------------------------------------------------------- the images
# What the fork's text2imgapi() returns for an image: processing.py process_images_inner makes
# Image.fromarray(x_sample) of the decoded latent (RGB, 8 bits a channel) and, with
# opts.enable_pnginfo (true: shared.py default and all-in-one-ai
# sagemaker/stable-diffusion-webui/config.json, copied into the image by Dockerfile.inference),
# sets image.info["parameters"] = the image's infotext; api.py encode_pil_to_base64 saves it
# with opts.samples_format "png" (same two sources) through PngImagePlugin.PngInfo.add_text and
# returns base64.b64encode(bytes), which TextToImageResponse's List[str] decodes to str: plain
# base64 (no "data:image/png;base64," prefix, no line breaks).
#
# The pixels are the emulator's (no weights here): not blank, a pattern of three per-channel
# triangle-wave ramps whose directions, periods and phases come from the SHA-256 of what makes a
# Stable Diffusion image (the loaded checkpoint's bytes, prompt, negative prompt, the image's
# seed, size, steps, CFG scale, sampler, ...). Same inputs, same bytes; another checkpoint,
# another picture.
OPT_F = 8  # processing.py opt_f: the latent is height//8 x width//8, decoded 8 times larger
MAX_PIXELS = 2048 * 2048  # the emulator's cap (a real GPU runs out of memory somewhere above)


def _triangle(u):
    return 2 * u if u < 128 else 2 * (255 - u) + 1


# _WAVE[r][v] = triangle((v + r) mod 256): one bytes.translate table per phase r.
_WAVE = [bytes(_triangle((v + r) & 255) for v in range(256)) for r in range(256)]


def _scanlines(width, height, digest, blank):
    """PNG scanlines (filter byte 0, RGB) of the picture for `digest`, or all black."""
    if blank:
        return bytes(3 * width + 1) * height
    # Constant over 8x8 blocks, one block per latent pixel: a picture at the latent's
    # resolution (it also keeps the PNG small, as zlib finds the repeats).
    columns, rows = [], []
    for c in range(3):
        periods_x, phase_x = 1 + digest[c] % 3, digest[3 + c]
        columns.append(bytes((phase_x + (x - x % OPT_F) * 256 * periods_x // width) & 255
                             for x in range(width)))
        rows.append((1 + digest[6 + c] % 3, digest[9 + c], -1 if digest[12 + c] & 1 else 1))
    row, out, line = bytearray(3 * width), bytearray(), b""
    for y in range(height):
        if y % OPT_F == 0:
            for c, (periods_y, phase_y, sign) in enumerate(rows):
                row[c::3] = columns[c].translate(
                    _WAVE[(phase_y + sign * (y * 256 * periods_y // height)) & 255])
            line = b"\x00" + bytes(row)
        out += line
    return bytes(out)


def _chunk(kind, data):
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def _png(width, height, scanlines, parameters):
    """The PNG Pillow's PngImagePlugin._save writes for an RGB image with
    pnginfo.add_text("parameters", text): IHDR (8-bit, colour type 2), the text chunk (tEXt when
    key and text are Latin-1, else iTXt, uncompressed), IDAT, IEND. Pillow writes one IDAT per
    encoder buffer of max(MAXBLOCK = 65536, width * 4) bytes (ImageFile._save), zlib level 6
    (compress_level -1, zlib's default)."""
    try:
        text = _chunk(b"tEXt", b"parameters\x00" + parameters.encode("latin-1"))
    except UnicodeEncodeError:
        text = _chunk(b"iTXt", b"parameters\x00\x00\x00\x00\x00" + parameters.encode("utf-8"))
    data, step = zlib.compress(scanlines, 6), max(65536, width * 4)
    return (b"\x89PNG\r\n\x1a\n"
            + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + text
            + b"".join(_chunk(b"IDAT", data[i:i + step]) for i in range(0, len(data), step))
            + _chunk(b"IEND", b""))


def _quote(value):
    """generation_parameters_copypaste.quote."""
    if "," not in str(value):
        return value
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def _infotext(p, index):
    """processing.py create_infotext for image `index` (iteration * batch_size + position), with
    the options of all-in-one-ai's config.json (add_model_hash_to_info true,
    add_model_name_to_info false, CLIP_stop_at_last_layers 1, eta_noise_seed_delta 0,
    face_restoration_model null, no hypernetwork)."""
    batch = p["batch_size"]
    eta = None  # "Eta": shown when the sampler's eta is not its default
    if p["sampler_name"] in ("DDIM", "PLMS"):  # VanillaStableDiffusionSampler, default 0.0
        eta = p["eta"] if p["eta"] is not None and p["eta"] != 0.0 else None
    elif (p["eta"] or 1.0) != 1.0:  # KDiffusionSampler: p.eta or opts.eta_ancestral, default 1.0
        eta = p["eta"]
    params = {
        "Steps": p["steps"], "Sampler": p["sampler_name"], "CFG scale": p["cfg_scale"],
        "Seed": p["all_seeds"][index], "Face restoration": None,
        "Size": f"{p['width']}x{p['height']}", "Model hash": p["sd_model_hash"], "Model": None,
        "Hypernet": None, "Hypernet strength": None,
        "Batch size": None if batch < 2 else batch,
        "Batch pos": None if batch < 2 else index % batch,
        "Variation seed": None if p["subseed_strength"] == 0 else p["all_subseeds"][index],
        "Variation seed strength": None if p["subseed_strength"] == 0 else p["subseed_strength"],
        "Seed resize from": (None if p["seed_resize_from_w"] == 0 or p["seed_resize_from_h"] == 0
                             else f"{p['seed_resize_from_w']}x{p['seed_resize_from_h']}"),
        "Denoising strength": p["denoising_strength"], "Conditional mask weight": None,
        "Eta": eta, "Clip skip": None, "ENSD": None, **p["extra_generation_params"]}
    text = ", ".join(k if k == v else f"{k}: {_quote(v)}" for k, v in params.items()
                     if v is not None)
    negative = p["negative_prompt"]
    negative = "\nNegative prompt: " + negative if negative else ""
    return f"{p['prompt']}{negative}\n{text}".strip()


def _model_hash(data):
    """modules/sd_models.py model_hash: sha256 of the 64 KiB at offset 1 MiB, 8 hex digits."""
    return hashlib.sha256(data[0x100000:0x110000]).hexdigest()[:8]


def _txt2img(req, env, s3, checkpoint, blank):
    """invocations() for task text-to-image, then api.py text2imgapi() and processing.py
    process_images(). `checkpoint` is (title, bytes or None) of what the container loaded."""
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
    request, _ = _txt2img_request(payload)  # valid: _request_errors passed
    # text2imgapi: validate_sampler_name(sampler_name or sampler_index); sampler_index
    # defaults to "Euler" (models.py L101-105). Its HTTPException is inside invocations()' try.
    sampler = request["sampler_name"] or request["sampler_index"]
    if sampler not in SAMPLERS:
        raise HandlerError(f"fastapi.HTTPException: 404 Sampler not found ({sampler!r})")
    # processing.py L124: script_args = json.loads(script_args) if not None; text2imgapi then
    # calls p.scripts.run(p, *p.script_args); ScriptRunner.run (modules/scripts.py L305-309)
    # returns None for script index args[0] == 0, and process_images() runs.
    raw_args = request["script_args"]
    if raw_args is None:
        raise HandlerError("TypeError: modules.scripts.ScriptRunner.run() argument after * must "
                           "be an iterable, not NoneType (txt2img_payload.script_args omitted)")
    try:
        script_args = json.loads(raw_args)
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
    # StableDiffusionProcessing(**vars(populate)): a null field is passed as None.
    p = dict(request)
    if p["prompt"] is None:
        raise HandlerError("AssertionError: assert p.prompt is not None (process_images_inner)")
    for name in ("width", "height", "batch_size", "n_iter", "steps", "cfg_scale",
                 "subseed_strength", "seed_resize_from_w", "seed_resize_from_h",
                 "denoising_strength"):
        if p[name] is None:
            raise HandlerError(f"TypeError: txt2img_payload.{name} is null")
    width, height, batch, n_iter = p["width"], p["height"], p["batch_size"], p["n_iter"]
    # create_random_tensors([opt_C, height // opt_f, width // opt_f]): the image is the latent
    # decoded, (height // 8 * 8) x (width // 8 * 8).
    image_w, image_h = width // OPT_F * OPT_F, height // OPT_F * OPT_F
    if image_w < 1 or image_h < 1 or batch < 1 or n_iter < 1:
        raise HandlerError(f"RuntimeError: cannot generate {batch}x{n_iter} images of "
                           f"{width}x{height}")
    if image_w * image_h > MAX_PIXELS:
        raise HandlerError(f"torch.cuda.OutOfMemoryError: CUDA out of memory ({width}x{height}; "
                           "the emulator draws at most 2048x2048 pixels)")
    p.update(sampler_name=sampler, negative_prompt=p["negative_prompt"] or "",
             styles=p["styles"] or [], extra_generation_params={})
    if p["enable_hr"]:  # StableDiffusionProcessingTxt2Img.init
        p["extra_generation_params"]["First pass size"] = \
            f"{p['firstphase_width']}x{p['firstphase_height']}"
    # process_images_inner: seed = get_fixed_seed(p.seed): None or -1 draws
    # random.randrange(4294967294) (so does the subseed); all_seeds = seed + x per image when
    # subseed_strength == 0 (else seed for every image), all_subseeds = subseed + x.
    count = batch * n_iter  # text2imgapi sets do_not_save_grid: no grid image is added
    seed = p["seed"] if p["seed"] not in (None, -1) else random.randrange(4294967294)
    subseed = p["subseed"] if p["subseed"] not in (None, -1) else random.randrange(4294967294)
    p["all_seeds"] = [seed + (x if p["subseed_strength"] == 0 else 0) for x in range(count)]
    p["all_subseeds"] = [subseed + x for x in range(count)]
    title, weights = checkpoint
    p["sd_model_hash"] = _model_hash(weights) if weights is not None else None
    model_id = (hashlib.sha256(weights).hexdigest() if weights is not None
                else f"not in this S3: {title}")
    infotexts, images = [], []
    for i in range(count):
        infotexts.append(_infotext(p, i))
        digest = hashlib.sha256(json.dumps([
            model_id, p["prompt"], p["negative_prompt"], p["all_seeds"][i],
            p["all_subseeds"][i] if p["subseed_strength"] else None, p["subseed_strength"],
            width, height, p["steps"], p["cfg_scale"], sampler, p["eta"], p["enable_hr"],
            p["tiling"]]).encode()).digest()
        png = _png(image_w, image_h, _scanlines(image_w, image_h, digest, blank), infotexts[-1])
        images.append(base64.b64encode(png).decode())
    # processing.py Processed.js(): json.dumps of these keys, in this order. job_timestamp is
    # shared.state.begin()'s datetime.now().strftime("%Y%m%d%H%M%S").
    info = {
        "prompt": p["prompt"], "all_prompts": [p["prompt"]] * count,
        "negative_prompt": p["negative_prompt"],
        "all_negative_prompts": [p["negative_prompt"]] * count,
        "seed": p["all_seeds"][0], "all_seeds": p["all_seeds"],
        "subseed": p["all_subseeds"][0], "all_subseeds": p["all_subseeds"],
        "subseed_strength": p["subseed_strength"], "width": width, "height": height,
        "sampler_name": sampler, "cfg_scale": p["cfg_scale"], "steps": p["steps"],
        "batch_size": batch, "restore_faces": p["restore_faces"],
        "face_restoration_model": None, "sd_model_hash": p["sd_model_hash"],
        "seed_resize_from_w": p["seed_resize_from_w"],
        "seed_resize_from_h": p["seed_resize_from_h"],
        "denoising_strength": p["denoising_strength"],
        "extra_generation_params": p["extra_generation_params"], "index_of_first_image": 0,
        "infotexts": infotexts, "styles": p["styles"],
        "job_timestamp": time.strftime("%Y%m%d%H%M%S"), "clip_skip": 1,
        "is_using_inpainting_conditioning": False}
    # TextToImageResponse(images=b64images, parameters=vars(txt2imgreq), info=processed.js()):
    # parameters is the request model with its defaults, as sent (seed -1 stays -1; the seed
    # used is in info).
    return {"images": images, "parameters": request, "info": json.dumps(info)}


def invoke_async(endpoint_name, model, body, content_type, s3, ecr_backends, account,
                 external_revision, blank=False):
    """POST /invocations with `body` on the inference container of `model` (the endpoint's
    serving variant). Returns (HTTP status, response bytes); 2xx is a success. `blank`: the
    images are drawn all black (config blank_images, a finetune gone wrong)."""
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
                return 400, _json({"detail": "There was an error parsing the body"})
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
        response = _txt2img(req, env, s3, loaded_checkpoint(container, s3), blank)
    except HandlerError as err:
        # The handler printed the traceback and returned None; FastAPI 0.90.1
        # serialize_response() validates None against the non-Optional response_model Union
        # (create_response_field(required=True)), raises ValidationError, and Starlette answers
        # 500.
        log.append(f"invocation (fork {revision}): Traceback: {err}")
        return SERVER_ERROR
    log.append(f"invocation (fork {revision}): text-to-image, {len(response['images'])} "
               f"image(s) of {response['parameters']['width']}x"
               f"{response['parameters']['height']}{' drawn blank' if blank else ''}")
    return 200, _json(response)


def loaded_checkpoint(container, s3):
    """(title, bytes or None) of the checkpoint the model's inference container loads
    (select_checkpoint); the bytes are None when this S3 does not hold the model data."""
    env = container.get("Environment") or {}
    try:
        files = model_files(container, s3)
    except Crash:
        files = None
    if files is None:
        return (env.get("ckpt") or "").removeprefix("/opt/ml/model/"), None
    title = select_checkpoint(files, env)
    return title, (model_file(container, s3, title) if title else None)

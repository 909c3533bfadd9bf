//! What the all-in-one-ai training image does with a CreateTrainingJob, and what sdop sends so
//! that it trains (sources: README "Container contract"):
//!
//! 1. The sagemaker-training toolkit `json.loads` every hyperparameter value (keeping the raw
//!    string when that fails) and runs `train.py --key value ...`.
//! 2. `train.py` (all-in-one-ai `sagemaker/stable-diffusion-webui/train.py`, the version with
//!    `--dreambooth-config-id`) accepts only [`TRAIN_PY_ARGUMENTS`]; argparse exits on any
//!    other key. It formats a shell line `... --train-args '{train-args}' ... --ckpt {ckpt}
//!    --region-name {region} --api-endpoint {api-endpoint}` and drops `os.system`'s status.
//! 3. The fork's `webui.py` (`train()`, branch `dreambooth`) runs `json.loads(--train-args)`,
//!    reads [`TRAIN_ARGS_KEYS`] (and [`NEW_MODEL_KEYS`]) with `[...]`, extracts the source
//!    checkpoint from `--ckpt-dir /opt/ml/input/data/models`, reads the DreamBooth config
//!    `/opt/ml/input/data/config/{dreambooth-config-id}.json` as a positional list for
//!    `DreamboothConfig(*config)` (extension 249de82 `dreambooth/db_config.py`), trains and
//!    uploads `{sd-models-s3uri}{model}_*.ckpt|.yaml`.

use serde_json::{json, Value};

use crate::model::naming::content_hash;

/// `train.py`'s argparse options (without `--`), the only hyperparameters it accepts.
pub const TRAIN_PY_ARGUMENTS: &[&str] = &[
    "train-task",
    "train-args",
    "embeddings-s3uri",
    "hypernetwork-s3uri",
    "sd-models-s3uri",
    "db-models-s3uri",
    "ckpt",
    "region-name",
    "username",
    "api-endpoint",
    "dreambooth-config-id",
];

/// `train_dreambooth_settings` keys webui.py reads with `[...]` (a missing one is a KeyError).
pub const TRAIN_ARGS_KEYS: &[&str] = &[
    "db_create_new_db_model",
    "db_lora_model_name",
    "db_lora_weight",
    "db_lora_txt_weight",
    "db_train_imagic_only",
    "db_use_subdir",
    "db_custom_model_name",
    "db_train_wizard_person",
    "db_train_wizard_object",
    "db_performance_wizard",
];

/// Read in addition when `db_create_new_db_model` is true.
pub const NEW_MODEL_KEYS: &[&str] = &[
    "db_new_model_name",
    "db_new_model_src",
    "db_new_model_scheduler",
    "db_create_from_hub",
    "db_new_model_url",
    "db_new_model_token",
    "db_new_model_extract_ema",
];

/// Where the job's channels are mounted.
pub const CHANNEL_ROOT: &str = "/opt/ml/input/data/";
/// Channel names: the source checkpoint (train.py's `--ckpt-dir`) and the config.
pub const MODELS_CHANNEL: &str = "models";
pub const CONFIG_CHANNEL: &str = "config";
/// Concept `i` (0-based) is mounted as `concepts`, `concepts2`, `concepts3`.
pub fn concept_channel(index: usize) -> String {
    if index == 0 {
        "concepts".to_string()
    } else {
        format!("concepts{}", index + 1)
    }
}

/// One concept as the positional config holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConceptSettings {
    pub instance_prompt: String,
    pub class_prompt: String,
    pub instance_token: String,
    pub class_token: String,
    pub num_class_images: u32,
}

/// The friendly fields of a `DreamboothJob`, as the contract needs them.
#[derive(Debug, Clone, PartialEq)]
pub struct DreamboothSettings {
    /// `db_new_model_name` (letters, digits, `-`, `_`: `sanitize_name` keeps it as is).
    pub model_name: String,
    /// The checkpoint's file name in the `models` channel (`db_new_model_src`).
    pub source_file: String,
    /// SD 2.x: the extension writes a `.yaml` beside the checkpoint.
    pub v2: bool,
    pub resolution: u32,
    pub max_train_steps: u32,
    pub learning_rate: f64,
    pub train_batch_size: u32,
    pub concepts: Vec<ConceptSettings>,
}

/// The positional config's layout: `DreamboothConfig.__init__` parameters of extension 249de82.
pub struct TrainingContract {
    /// Concepts the positional format holds (`c1_`...`c3_`).
    pub max_concepts: usize,
}

pub static POSITIONAL_2023_03: TrainingContract = TrainingContract { max_concepts: 3 };

/// Index of a top-level `DreamboothConfig` parameter (extension 249de82
/// `dreambooth/db_config.py`; webui.py 9f7dec70 writes 0, 14, 30, 31, 39, 40, 49 itself).
mod at {
    pub const MODEL_NAME: usize = 0;
    pub const ATTENTION: usize = 5;
    pub const GRADIENT_ACCUMULATION_STEPS: usize = 11;
    pub const LEARNING_RATE: usize = 16;
    pub const MAX_TRAIN_STEPS: usize = 22;
    pub const NUM_TRAIN_EPOCHS: usize = 26;
    pub const RESOLUTION: usize = 30;
    pub const SAVE_EMBEDDING_EVERY: usize = 34;
    pub const SAVE_PREVIEW_EVERY: usize = 35;
    pub const TRAIN_BATCH_SIZE: usize = 42;
    pub const USE_CONCEPTS: usize = 45;
    pub const V2: usize = 49;
    /// First per-concept parameter (`c1_class_data_dir`); each concept has [`CONCEPT_LEN`].
    pub const CONCEPTS: usize = 50;
    pub const CONCEPT_LEN: usize = 18;
    // Offsets inside one concept block.
    pub const CLASS_PROMPT: usize = 4;
    pub const CLASS_TOKEN: usize = 5;
    pub const INSTANCE_DATA_DIR: usize = 6;
    pub const INSTANCE_PROMPT: usize = 7;
    pub const INSTANCE_TOKEN: usize = 8;
    pub const NUM_CLASS_IMAGES: usize = 11;
}

/// `DreamboothConfig.__init__` defaults of extension 249de82, in parameter order.
fn config_defaults() -> Vec<Value> {
    let mut config = vec![
        json!(""),         // model_name
        json!(0.9),        // adam_beta1
        json!(0.999),      // adam_beta2
        json!(1e-8),       // adam_epsilon
        json!(0.01),       // adam_weight_decay
        json!("default"),  // attention
        json!(true),       // center_crop
        json!(""),         // concepts_path
        json!(""),         // custom_model_name
        json!(0),          // epoch_pause_frequency
        json!(0),          // epoch_pause_time
        json!(1),          // gradient_accumulation_steps
        json!(true),       // gradient_checkpointing
        json!(false),      // half_model
        json!(false),      // has_ema
        json!(false),      // hflip
        json!(0.00000172), // learning_rate
        json!(1e-4),       // lora_learning_rate
        json!(5e-5),       // lora_txt_learning_rate
        json!("constant"), // lr_scheduler
        json!(0),          // lr_warmup_steps
        json!(75),         // max_token_length
        json!(1000),       // max_train_steps
        json!("fp16"),     // mixed_precision
        json!(""),         // model_path
        json!(false),      // not_cache_latents
        json!(1),          // num_train_epochs
        json!(true),       // pad_tokens
        json!(""),         // pretrained_vae_name_or_path
        json!(1.0),        // prior_loss_weight
        json!(512),        // resolution
        json!(0),          // revision
        json!(1),          // sample_batch_size
        json!(false),      // save_class_txt
        json!(500),        // save_embedding_every
        json!(500),        // save_preview_every
        json!(false),      // save_use_global_counts
        json!(false),      // save_use_epochs
        json!(false),      // scale_lr
        json!("ddim"),     // scheduler
        json!(""),         // src
        json!(false),      // shuffle_tags
        json!(1),          // train_batch_size
        json!(true),       // train_text_encoder
        json!(true),       // use_8bit_adam
        json!(false),      // use_concepts
        json!(false),      // use_cpu
        json!(true),       // use_ema
        json!(false),      // use_lora
        json!(false),      // v2
    ];
    for _ in 0..POSITIONAL_2023_03.max_concepts {
        config.extend([
            json!(""),  // class_data_dir
            json!(7.5), // class_guidance_scale
            json!(60),  // class_infer_steps
            json!(""),  // class_negative_prompt
            json!(""),  // class_prompt
            json!(""),  // class_token
            json!(""),  // instance_data_dir
            json!(""),  // instance_prompt
            json!(""),  // instance_token
            json!(-1),  // max_steps
            json!(1),   // n_save_sample
            json!(0),   // num_class_images
            json!(-1),  // sample_seed
            json!(7.5), // save_guidance_scale
            json!(60),  // save_infer_steps
            json!(""),  // save_sample_negative_prompt
            json!(""),  // save_sample_prompt
            json!(""),  // save_sample_template
        ]);
    }
    config
}

impl TrainingContract {
    /// The DreamBooth config object `<dreambooth-config-id>.json`: the positional list.
    pub fn dreambooth_config(&self, settings: &DreamboothSettings) -> Value {
        let mut config = config_defaults();
        config[at::MODEL_NAME] = json!(settings.model_name);
        config[at::ATTENTION] = json!("default");
        config[at::GRADIENT_ACCUMULATION_STEPS] = json!(1);
        config[at::LEARNING_RATE] = json!(settings.learning_rate);
        config[at::MAX_TRAIN_STEPS] = json!(settings.max_train_steps);
        config[at::NUM_TRAIN_EPOCHS] = json!(1);
        config[at::RESOLUTION] = json!(settings.resolution);
        // One checkpoint at the end: intermediate saves would each be a multi-GB object.
        config[at::SAVE_EMBEDDING_EVERY] = json!(0);
        config[at::SAVE_PREVIEW_EVERY] = json!(0);
        config[at::TRAIN_BATCH_SIZE] = json!(settings.train_batch_size);
        config[at::USE_CONCEPTS] = json!(false);
        config[at::V2] = json!(settings.v2);
        for (i, concept) in settings.concepts.iter().enumerate() {
            let base = at::CONCEPTS + i * at::CONCEPT_LEN;
            config[base + at::CLASS_PROMPT] = json!(concept.class_prompt);
            config[base + at::CLASS_TOKEN] = json!(concept.class_token);
            config[base + at::INSTANCE_DATA_DIR] =
                json!(format!("{CHANNEL_ROOT}{}/", concept_channel(i)));
            config[base + at::INSTANCE_PROMPT] = json!(concept.instance_prompt);
            config[base + at::INSTANCE_TOKEN] = json!(concept.instance_token);
            config[base + at::NUM_CLASS_IMAGES] = json!(concept.num_class_images);
        }
        Value::Array(config)
    }

    /// `dreambooth-config-id`: the config's content address.
    pub fn config_id(&self, config: &Value) -> String {
        let hash = content_hash(config);
        format!("sdop-{}", &hash[..hash.len().min(16)])
    }

    /// `train-args` as webui.py parses it: the full key set for a new model.
    pub fn train_args(&self, settings: &DreamboothSettings) -> Value {
        json!({
            "train_dreambooth_settings": {
                "db_create_new_db_model": true,
                "db_lora_model_name": "",
                "db_lora_weight": 1,
                "db_lora_txt_weight": 1,
                "db_train_imagic_only": false,
                // The upload globs `{ckpt-dir}/{model}_*.ckpt`: a sub-directory or a custom
                // name would never be uploaded.
                "db_use_subdir": false,
                "db_custom_model_name": "",
                // The wizards would overwrite the steps sdop computed the checkpoint name from.
                "db_train_wizard_person": false,
                "db_train_wizard_object": false,
                "db_performance_wizard": false,
                "db_new_model_name": settings.model_name,
                "db_new_model_src": settings.source_file,
                "db_new_model_scheduler": "ddim",
                "db_create_from_hub": false,
                "db_new_model_url": "",
                "db_new_model_token": "",
                "db_new_model_extract_ema": false,
            }
        })
    }

    /// The steps the container trains: `max_train_steps * train_batch_size` (the loop adds the
    /// batch size per step until `global_step >= actual_train_steps`); a new model starts at
    /// revision 0.
    pub fn total_steps(&self, settings: &DreamboothSettings) -> u64 {
        u64::from(settings.max_train_steps) * u64::from(settings.train_batch_size)
    }

    /// The files the job uploads to `sd-models-s3uri`: `<model>_<total steps>.ckpt`, and the
    /// `.yaml` beside it for SD 2.x (extension `diff_to_sd.py` `compile_checkpoint`).
    pub fn checkpoint_files(&self, settings: &DreamboothSettings) -> (String, Option<String>) {
        let stem = format!("{}_{}", settings.model_name, self.total_steps(settings));
        (
            format!("{stem}.ckpt"),
            settings.v2.then(|| format!("{stem}.yaml")),
        )
    }
}

/// A job's own prefix under `base` (a prefix ending in `/`): `<base><job name>/`. train.py
/// uploads to `sd-models-s3uri` by string concatenation (`upload_s3files(sd_models_s3uri, ...)`),
/// and the WebUI's S3 model sync lists `Stable-diffusion/` recursively and mirrors sub-folders
/// (fork `modules/sync_models.py`), so a per-job folder stays visible to it.
pub fn job_prefix(base: &str, job_name: &str) -> String {
    format!("{base}{job_name}/")
}

/// A hyperparameter value as SageMaker must carry it: JSON-encoded once, so that the toolkit's
/// `json.loads` gives back exactly `value` (as upstream's notebook does with `json.dumps`).
pub fn hyperparameter_value(value: &str) -> String {
    Value::String(value.to_string()).to_string()
}

/// What train.py receives for a hyperparameter as SageMaker stores it: the toolkit's
/// `json.loads`, or the raw text when that fails (`environment.py` `read_hyperparameters`).
pub fn hyperparameter_text(stored: &str) -> String {
    match serde_json::from_str::<Value>(stored) {
        Ok(Value::String(text)) => text,
        Ok(other) => other.to_string(),
        Err(_) => stored.to_string(),
    }
}

/// Values train.py pastes into its shell line unquoted (`--api-endpoint {v}`, `--ckpt {v}`...):
/// a space, quote or shell metacharacter would split or break the command.
pub fn unquoted_shell_word(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty: train.py passes it as `--flag VALUE` and webui.py's argparse fails with 'expected one argument'".into());
    }
    match value
        .chars()
        .find(|c| c.is_whitespace() || "'\"`$\\;&|<>(){}*?![]#~".contains(*c))
    {
        Some(c) => Err(format!(
            "{value:?} contains {c:?}: train.py pastes it unquoted into a shell command line"
        )),
        None => Ok(()),
    }
}

/// Text inside train.py's single-quoted `--train-args '...'`.
pub fn single_quoted_shell_text(value: &str) -> Result<(), String> {
    if value.contains('\'') {
        Err(format!("{value:?} contains a single quote: train.py wraps train-args in '...' on a shell command line"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> DreamboothSettings {
        DreamboothSettings {
            model_name: "jp-style-model".into(),
            source_file: "v2-1_768-ema-pruned.ckpt".into(),
            v2: true,
            resolution: 768,
            max_train_steps: 2500,
            learning_rate: 2e-6,
            train_batch_size: 1,
            concepts: vec![ConceptSettings {
                instance_prompt: "photo of jpstyle girl".into(),
                class_prompt: "photo of girl".into(),
                instance_token: "jpstyle girl".into(),
                class_token: "girl".into(),
                num_class_images: 0,
            }],
        }
    }

    #[test]
    fn positional_config_matches_the_extension_layout() {
        let contract = &POSITIONAL_2023_03;
        let config = contract.dreambooth_config(&settings());
        let list = config.as_array().unwrap();
        assert_eq!(list.len(), 104);
        // Indices webui.py 9f7dec70 itself writes or reads by position.
        assert_eq!(list[22], json!(2500)); // max_train_steps (wizard writes [22])
        assert_eq!(list[26], json!(1)); // num_train_epochs ([26])
        assert_eq!(list[42], json!(1)); // train_batch_size ([42])
        assert_eq!(list[49], json!(true)); // v2 ([49])
        assert_eq!(list[30], json!(768)); // resolution ([30])
        assert_eq!(list[59], json!(-1)); // c1_max_steps ([59])
        assert_eq!(list[61], json!(0)); // c1_num_class_images ([61])
        assert_eq!(list[77], json!(-1)); // c2_max_steps ([77])
        assert_eq!(list[95], json!(-1)); // c3_max_steps ([95])
        assert_eq!(list[56], json!("/opt/ml/input/data/concepts/"));
        assert_eq!(list[57], json!("photo of jpstyle girl"));
        assert_eq!(list[54], json!("photo of girl"));
        assert_eq!(list[74], json!("")); // c2_instance_data_dir: unused concept
    }

    #[test]
    fn train_args_hold_every_key_webui_reads() {
        let args = POSITIONAL_2023_03.train_args(&settings());
        let keys = args["train_dreambooth_settings"].as_object().unwrap();
        for key in TRAIN_ARGS_KEYS.iter().chain(NEW_MODEL_KEYS) {
            assert!(keys.contains_key(*key), "{key}");
        }
        assert_eq!(keys.len(), TRAIN_ARGS_KEYS.len() + NEW_MODEL_KEYS.len());
    }

    #[test]
    fn checkpoint_name_from_steps_times_batch() {
        let mut s = settings();
        assert_eq!(
            POSITIONAL_2023_03.checkpoint_files(&s),
            (
                "jp-style-model_2500.ckpt".into(),
                Some("jp-style-model_2500.yaml".into())
            )
        );
        s.train_batch_size = 2;
        s.v2 = false;
        assert_eq!(
            POSITIONAL_2023_03.checkpoint_files(&s),
            ("jp-style-model_5000.ckpt".into(), None)
        );
    }

    #[test]
    fn hyperparameters_are_json_encoded_once_more() {
        let args = POSITIONAL_2023_03.train_args(&settings()).to_string();
        let sent = hyperparameter_value(&args);
        // The toolkit's json.loads gives back the JSON text webui.py parses.
        let decoded: String = serde_json::from_str(&sent).unwrap();
        assert_eq!(decoded, args);
        assert_eq!(hyperparameter_value("dreambooth"), "\"dreambooth\"");
    }

    #[test]
    fn shell_words() {
        assert!(unquoted_shell_word("https://x.execute-api.us-east-1.amazonaws.com/prod").is_ok());
        assert!(unquoted_shell_word("noapi").is_ok());
        assert!(unquoted_shell_word("").is_err());
        assert!(unquoted_shell_word("a b").is_err());
        assert!(unquoted_shell_word("a;b").is_err());
        assert!(single_quoted_shell_text("{\"a\": \"it's\"}").is_err());
    }
}

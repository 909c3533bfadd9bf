//! The contract of the all-in-one-ai containers: what the training image (`train.py` over the
//! sagemaker-training toolkit, the WebUI fork's `webui.py --train`, the DreamBooth extension)
//! and the inference image (`serve`, the fork's `modules/shared.py` and `webui.py`) read from
//! what SageMaker passes them. Pure: no I/O.
//!
//! A contract is a named, versioned choice (`spec.contract` on `DreamboothJob` and
//! `Endpoint`). Adding a later upstream version is one more [`ContainerContract`] variant and
//! its rules here; kinds only call the functions below. Upstream commits are listed in the
//! README ("Container contract").

pub mod inference;
pub mod training;

use serde::{Deserialize, Serialize};

/// The upstream versions sdop can speak to.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum ContainerContract {
    /// The workshop's images (AMI `GAI-SD-workshop-20230308`): WebUI fork 9f7dec70
    /// (2023-03-08), DreamBooth extension 249de82 (2023-03-07), the `train.py` that takes
    /// `--train-task ... --dreambooth-config-id`. The inference image reads `api_endpoint` at
    /// import and calls it.
    #[default]
    #[serde(rename = "all-in-one-ai/2023-03-08")]
    Workshop20230308,
    /// The fork as of 47dd0bbc (2023-03-01), same extension and `train.py`: the inference
    /// image starts without an all-in-one-ai API (`api_endpoint` is read per request only),
    /// so a standalone endpoint can use the notebook's stand-in `noapi`.
    #[serde(rename = "all-in-one-ai/2023-03-01")]
    Workshop20230301,
}

impl ContainerContract {
    pub fn name(self) -> &'static str {
        match self {
            ContainerContract::Workshop20230308 => "all-in-one-ai/2023-03-08",
            ContainerContract::Workshop20230301 => "all-in-one-ai/2023-03-01",
        }
    }

    pub fn training(self) -> &'static training::TrainingContract {
        match self {
            // Both fork versions share webui.py's DreamBooth branch (the same keys and the
            // same positional config), the extension and train.py.
            ContainerContract::Workshop20230308 | ContainerContract::Workshop20230301 => {
                &training::POSITIONAL_2023_03
            }
        }
    }

    pub fn inference(self) -> &'static inference::InferenceContract {
        match self {
            ContainerContract::Workshop20230308 => &inference::API_AT_IMPORT,
            ContainerContract::Workshop20230301 => &inference::API_PER_REQUEST,
        }
    }
}

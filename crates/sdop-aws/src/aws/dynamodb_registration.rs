//! `dynamodb:endpoint-registration`: an endpoint's record in the all-in-one-ai endpoint
//! registry, the DynamoDB table the WebUI lists endpoints from (all-in-one-ai
//! `backend/src/all_in_one_ai_endpoint/lambda_function.py`: `scan` by `industrial_model`;
//! `action=attach` writes `{endpoint_name, industrial_model}`; table `all_in_one_ai_endpoint`,
//! key `endpoint_name` + `industrial_model`, in `deployment/templates/all-in-one-ai-dynamodb.yaml`).
//!
//! Object name `TABLE/ENDPOINT/INDUSTRIAL_MODEL`. sdop writes the record with an extra
//! attribute naming its resource, only where no record is (a conditional put), and deletes
//! only a record that still carries that attribute: a record sdop did not write is never
//! touched. The industrial model (the WebUI creates it at its first start) is looked up when
//! the manifest does not give it.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;

use super::adapters::{Adapter, ObjectContext};
use super::classify;
use super::sweep::all_pages;
use crate::engine::plan::{
    DesiredObject, FieldChange, ObjectName, ObjectState, ObservedObject, Ownership,
};
use crate::error::{Error, Result};
use crate::kinds::endpoint::REGISTRATION;
use crate::manifest::ResourceId;
use crate::model::contracts::{RegistrationDesired, RegistrationFields};

pub struct RegistrationAdapter;

/// The attribute that marks a record as sdop's (the WebUI ignores attributes it does not read).
const OWNER: &str = "sdop_resource";
/// The WebUI's industrial model: its `model_algorithm` (fork `modules/shared.py` creates it
/// with `'model_algorithm': 'stable-diffusion-webui'`).
const WEBUI_ALGORITHM: &str = "stable-diffusion-webui";

/// `TABLE/ENDPOINT/INDUSTRIAL_MODEL` → its parts.
fn split(name: &str) -> Result<(&str, &str, &str)> {
    let mut parts = name.splitn(3, '/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(t), Some(e), Some(m)) if !t.is_empty() && !e.is_empty() && !m.is_empty() => {
            Ok((t, e, m))
        }
        _ => Err(Error::Terminal(format!(
            "{name:?} is not TABLE/ENDPOINT/INDUSTRIAL_MODEL"
        ))),
    }
}

fn key(endpoint: &str, industrial_model: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (
            "endpoint_name".to_string(),
            AttributeValue::S(endpoint.to_string()),
        ),
        (
            "industrial_model".to_string(),
            AttributeValue::S(industrial_model.to_string()),
        ),
    ])
}

fn text<'a>(object: &'a DesiredObject, input: &str) -> Option<&'a str> {
    object.inputs.get(input).and_then(Value::as_str)
}

/// The id of the WebUI's industrial model in `table`, if the WebUI has created it.
async fn webui_industrial_model(clients: &super::Clients, table: &str) -> Result<Option<String>> {
    let mut pages = clients
        .dynamodb
        .scan()
        .table_name(table)
        .filter_expression("model_algorithm = :algorithm")
        .expression_attribute_values(":algorithm", AttributeValue::S(WEBUI_ALGORITHM.into()))
        .into_paginator()
        .send();
    let mut ids = Vec::new();
    while let Some(page) = pages.next().await {
        let page = match page.map_err(|e| classify("dynamodb:Scan", e)) {
            Ok(page) => page,
            // The table is the WebUI stack's: before the stack exists (an empty account's
            // first plan) there is no industrial model yet, so the record waits for it.
            // DynamoDB answers ResourceNotFoundException for a missing table (API_Scan).
            Err(err) if super::is_not_found(&err, &["ResourceNotFoundException"]) => {
                return Ok(None)
            }
            Err(err) => return Err(err),
        };
        ids.extend(page.items().iter().filter_map(|item| {
            item.get("model_id")
                .and_then(|v| v.as_s().ok())
                .map(String::to_string)
        }));
    }
    ids.sort();
    match ids.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one.clone())),
        many => Err(Error::Terminal(format!(
            "{} industrial models with model_algorithm {WEBUI_ALGORITHM} in {table} ({}): set webuiRegistration.industrialModel",
            many.len(),
            many.join(", ")
        ))),
    }
}

type Item = HashMap<String, AttributeValue>;

fn text_attribute<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

/// Pages (up to 1 MB each) of a table a sweep scans at most.
const SCAN_PAGES: usize = 3;

/// Every item of `table`, strongly consistent like GetItem's `ConsistentRead` (API_Scan:
/// "ConsistentRead ... the scan uses strongly consistent reads"); `None` past [`SCAN_PAGES`]
/// pages or when the table does not exist yet (each record is then read with GetItem, which
/// says so itself).
async fn all_records(clients: &super::Clients, table: &str) -> Result<Option<Vec<Item>>> {
    let scanned = all_pages(SCAN_PAGES, |start| async move {
        let page = clients
            .dynamodb
            .scan()
            .table_name(table)
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| classify("dynamodb:Scan", e))?;
        let next = page.last_evaluated_key().filter(|k| !k.is_empty()).cloned();
        Ok((page.items().to_vec(), next))
    })
    .await;
    match scanned {
        Err(err) if super::is_not_found(&err, &["ResourceNotFoundException"]) => Ok(None),
        other => other,
    }
}

#[async_trait]
impl Adapter for RegistrationAdapter {
    fn aws_type(&self) -> crate::model::object::AwsType {
        REGISTRATION
    }

    async fn resolve(
        &self,
        ctx: &ObjectContext<'_>,
        object: DesiredObject,
    ) -> Result<DesiredObject> {
        if object.name.known().is_some() {
            return Ok(object);
        }
        let (Some(table), Some(endpoint), Some(models)) = (
            text(&object, "table"),
            text(&object, "endpointName"),
            text(&object, "industrialModelTable"),
        ) else {
            return Ok(object);
        };
        let clients = ctx.clients;
        let id = match ctx
            .shared(&format!("dynamodb:Scan {models} industrial models"), || {
                webui_industrial_model(clients, models)
            })
            .await?
        {
            Some(id) => id.as_ref().clone(),
            None => webui_industrial_model(clients, models).await?,
        };
        let Some(id) = id else {
            // Not created yet: the WebUI creates it at its first start.
            return Ok(object);
        };
        let name = format!("{table}/{endpoint}/{id}");
        Ok(DesiredObject {
            name: ObjectName::Known(name),
            ..object.contract(RegistrationDesired {
                industrial_model: Some(id),
            })
        })
    }

    async fn read(
        &self,
        ctx: &ObjectContext<'_>,
        name: &str,
        _desired: Option<&DesiredObject>,
    ) -> Result<Option<ObservedObject>> {
        let (table, endpoint, industrial_model) = split(name)?;
        // In a sweep, one strongly consistent Scan of the table answers for every endpoint's
        // record (the portal's endpoint table holds one item per endpoint); alone, GetItem.
        let clients = ctx.clients;
        let listed = ctx
            .shared(&format!("dynamodb:Scan {table}"), || {
                all_records(clients, table)
            })
            .await?;
        let item = match listed.as_deref() {
            Some(Some(records)) => records
                .iter()
                .find(|item| {
                    text_attribute(item, "endpoint_name") == Some(endpoint)
                        && text_attribute(item, "industrial_model") == Some(industrial_model)
                })
                .cloned(),
            _ => ctx
                .clients
                .dynamodb
                .get_item()
                .table_name(table)
                .set_key(Some(key(endpoint, industrial_model)))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| classify("dynamodb:GetItem", e))?
                .item()
                .cloned(),
        };
        let Some(item) = item else {
            return Ok(None);
        };
        let ownership = match item
            .get(OWNER)
            .and_then(|v| v.as_s().ok())
            .and_then(|r| ResourceId::parse_recorded(r))
        {
            Some(owner) => Ownership::Owned { resource: owner },
            None => Ownership::Foreign,
        };
        let mut observed = RegistrationFields {
            industrial_model: industrial_model.to_string(),
        }
        .observed(name, ownership);
        observed.outputs.insert(
            "webuiRegistration".into(),
            format!("{table}: {endpoint} for industrial model {industrial_model}"),
        );
        Ok(Some(observed))
    }

    async fn create(&self, ctx: &ObjectContext<'_>, object: &DesiredObject) -> Result<ObjectState> {
        let name = object
            .name
            .known()
            .ok_or_else(|| Error::Terminal("registration name not known yet".into()))?;
        let (table, endpoint, industrial_model) = split(name)?;
        let mut item = key(endpoint, industrial_model);
        item.insert(OWNER.into(), AttributeValue::S(ctx.resource.to_string()));
        let put = ctx
            .clients
            .dynamodb
            .put_item()
            .table_name(table)
            .set_item(Some(item))
            // Never over a record someone else wrote (between our read and this write).
            .condition_expression("attribute_not_exists(endpoint_name)")
            .send()
            .await;
        match put {
            Ok(_) => Ok(ObjectState::Ready),
            Err(err) => {
                let err = classify("dynamodb:PutItem", err);
                if super::is_not_found(&err, &["ConditionalCheckFailedException"]) {
                    Err(Error::Terminal(format!(
                        "{table} already has a record for {endpoint} and industrial model {industrial_model} that sdop did not write: left as it is"
                    )))
                } else {
                    Err(err)
                }
            }
        }
    }

    async fn update(
        &self,
        _ctx: &ObjectContext<'_>,
        _object: &DesiredObject,
        _changes: &[FieldChange],
    ) -> Result<ObjectState> {
        // The record is its key: nothing to change in place.
        Ok(ObjectState::Ready)
    }

    async fn delete(&self, ctx: &ObjectContext<'_>, name: &str) -> Result<()> {
        let (table, endpoint, industrial_model) = split(name)?;
        let deleted = ctx
            .clients
            .dynamodb
            .delete_item()
            .table_name(table)
            .set_key(Some(key(endpoint, industrial_model)))
            // Only a record sdop wrote for this very resource.
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", OWNER)
            .expression_attribute_values(":owner", AttributeValue::S(ctx.resource.to_string()))
            .send()
            .await;
        match deleted {
            Ok(_) => Ok(()),
            Err(err) => {
                let err = classify("dynamodb:DeleteItem", err);
                // Gone, or no longer ours: nothing of sdop's is left to delete.
                if super::is_not_found(
                    &err,
                    &[
                        "ConditionalCheckFailedException",
                        "ResourceNotFoundException",
                    ],
                ) {
                    Ok(())
                } else {
                    Err(err)
                }
            }
        }
    }
}

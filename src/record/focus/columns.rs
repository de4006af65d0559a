//! The `focus` table's columns: FOCUS's, alphabetically, then genledger's
//! `x_` detail columns (FOCUS asks custom columns to come after its own).

use super::{Focus, OPENROUTER};
use crate::schema::{Column, ColumnType as T, Value};

macro_rules! fixed {
    ($name:literal, $value:expr) => {
        Column {
            name: $name,
            ty: T::Text,
            nullable: false,
            get: |_| Value::Text($value),
        }
    };
}

macro_rules! x_col {
    ($name:literal, $field:ident, $ty:expr) => {
        Column {
            name: $name,
            ty: $ty,
            nullable: true,
            get: |f: &Focus| f.g.$field.as_deref().into(),
        }
    };
    ($name:literal, $field:ident, $ty:expr, copy) => {
        Column {
            name: $name,
            ty: $ty,
            nullable: true,
            get: |f: &Focus| f.g.$field.into(),
        }
    };
}

macro_rules! money {
    ($name:literal, $field:ident) => {
        Column {
            name: $name,
            ty: T::Money,
            nullable: false,
            get: |f: &Focus| Value::Money(f.$field),
        }
    };
}

macro_rules! instant {
    ($name:literal, $field:ident . $i:tt) => {
        Column {
            name: $name,
            ty: T::Timestamp,
            nullable: false,
            get: |f: &Focus| Value::Timestamp(f.$field.$i),
        }
    };
}

/// FOCUS columns first, alphabetically, then genledger's `x_` columns.
pub(super) const COLUMNS: &[Column<Focus>] = &[
    money!("BilledCost", billed),
    Column {
        name: "BillingAccountId",
        ty: T::Text,
        nullable: false,
        get: |f| Value::Text(&f.account.billing_account_id),
    },
    Column {
        name: "BillingAccountName",
        ty: T::Text,
        nullable: true,
        get: |f| f.account.billing_account_name.as_deref().into(),
    },
    fixed!("BillingCurrency", "USD"),
    instant!("BillingPeriodEnd", billing_period.1),
    instant!("BillingPeriodStart", billing_period.0),
    fixed!("ChargeCategory", "Usage"),
    Column {
        name: "ChargeClass",
        ty: T::Text,
        nullable: true,
        get: |_| Value::Null,
    },
    Column {
        name: "ChargeDescription",
        ty: T::Text,
        nullable: false,
        get: |f| Value::Text(&f.description),
    },
    fixed!("ChargeFrequency", "Usage-Based"),
    instant!("ChargePeriodEnd", charge_period.1),
    instant!("ChargePeriodStart", charge_period.0),
    Column {
        name: "ConsumedQuantity",
        ty: T::Money,
        nullable: true,
        get: |f| Value::Money(f.quantity.0),
    },
    Column {
        name: "ConsumedUnit",
        ty: T::Text,
        nullable: true,
        get: |f| Value::Text(f.quantity.1),
    },
    money!("ContractedCost", list),
    money!("EffectiveCost", billed),
    Column {
        name: "HostProviderName",
        ty: T::Text,
        nullable: false,
        get: |f| Value::Text(&f.host),
    },
    // Usage draws on prepaid credits: OpenRouter invoices the purchase of
    // credits, never a generation, so no usage row has an invoice.
    Column {
        name: "InvoiceId",
        ty: T::Text,
        nullable: true,
        get: |_| Value::Null,
    },
    fixed!("InvoiceIssuerName", OPENROUTER),
    money!("ListCost", list),
    fixed!("PricingCategory", "Standard"),
    Column {
        name: "PricingQuantity",
        ty: T::Money,
        nullable: false,
        get: |f| Value::Money(f.quantity.0),
    },
    Column {
        name: "PricingUnit",
        ty: T::Text,
        nullable: false,
        get: |f| Value::Text(f.quantity.1),
    },
    fixed!("ProviderName", OPENROUTER),
    Column {
        name: "PublisherName",
        ty: T::Text,
        nullable: false,
        get: |f| Value::Text(&f.publisher),
    },
    Column {
        name: "RegionId",
        ty: T::Text,
        nullable: true,
        get: |f| f.region.as_ref().map(|r| r.0.as_str()).into(),
    },
    Column {
        name: "RegionName",
        ty: T::Text,
        nullable: true,
        get: |f| f.region.as_ref().map(|r| r.1.as_str()).into(),
    },
    fixed!("ServiceCategory", "AI and Machine Learning"),
    fixed!("ServiceName", OPENROUTER),
    fixed!("ServiceProviderName", OPENROUTER),
    fixed!("ServiceSubcategory", "Generative AI"),
    x_col!("SkuId", model, T::Text),
    Column {
        name: "SkuPriceId",
        ty: T::Text,
        nullable: true,
        get: |f| f.sku_price_id.as_deref().into(),
    },
    x_col!("SubAccountId", workspace_id, T::Text),
    // No workspace names reach genledger: the ID is the only name it has.
    x_col!("SubAccountName", workspace_id, T::Text),
    Column {
        name: "Tags",
        ty: T::Json,
        nullable: true,
        get: |f| f.tags.as_deref().into(),
    },
    Column {
        name: "x_GenerationId",
        ty: T::Text,
        nullable: false,
        get: |f| Value::Text(&f.g.id),
    },
    Column {
        name: "x_CreatedAt",
        ty: T::Timestamp,
        nullable: true,
        get: |f| f.g.created_at.map_or(Value::Null, Value::Timestamp),
    },
    x_col!("x_Model", model, T::Text),
    x_col!("x_ProviderName", provider_name, T::Text),
    x_col!("x_ApiType", api_type, T::Text),
    x_col!("x_AppId", app_id, T::Int, copy),
    x_col!("x_ExternalUser", external_user, T::Text),
    x_col!("x_SessionId", session_id, T::Text),
    x_col!("x_WorkspaceId", workspace_id, T::Text),
    x_col!("x_DataRegion", data_region, T::Text),
    x_col!("x_Usage", usage, T::Money, copy),
    x_col!(
        "x_UpstreamInferenceCost",
        upstream_inference_cost,
        T::Money,
        copy
    ),
    x_col!("x_CacheDiscount", cache_discount, T::Money, copy),
    x_col!("x_IsByok", is_byok, T::Bool, copy),
    x_col!("x_TokensPrompt", tokens_prompt, T::Int, copy),
    x_col!("x_TokensCompletion", tokens_completion, T::Int, copy),
    x_col!("x_NativeTokensPrompt", native_tokens_prompt, T::Int, copy),
    x_col!(
        "x_NativeTokensCompletion",
        native_tokens_completion,
        T::Int,
        copy
    ),
    x_col!(
        "x_NativeTokensReasoning",
        native_tokens_reasoning,
        T::Int,
        copy
    ),
    x_col!("x_NativeTokensCached", native_tokens_cached, T::Int, copy),
    x_col!(
        "x_NativeTokensCompletionImages",
        native_tokens_completion_images,
        T::Int,
        copy
    ),
    x_col!("x_NumMediaPrompt", num_media_prompt, T::Int, copy),
    x_col!("x_NumMediaCompletion", num_media_completion, T::Int, copy),
    x_col!("x_NumSearchResults", num_search_results, T::Int, copy),
    x_col!("x_LatencyMs", latency_ms, T::Float, copy),
    x_col!("x_GenerationTimeMs", generation_time_ms, T::Float, copy),
    x_col!("x_Streamed", streamed, T::Bool, copy),
    x_col!("x_Cancelled", cancelled, T::Bool, copy),
    x_col!("x_FinishReason", finish_reason, T::Text),
    x_col!("x_ResponseCacheSourceId", response_cache_source_id, T::Text),
    Column {
        name: "x_RunId",
        ty: T::Text,
        nullable: false,
        get: |f| Value::Text(&f.g.run_id),
    },
    Column {
        name: "x_ExportedAt",
        ty: T::Timestamp,
        nullable: false,
        get: |f| Value::Timestamp(f.g.exported_at),
    },
];

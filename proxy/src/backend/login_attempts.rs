//! Admin login attempts counted in Redis, so every replica throttles the same address and
//! account together (see `tollgate_admin::throttle`).

use std::time::Duration;

use async_trait::async_trait;
use fred::{
    clients::Client,
    types::{Value, scripts::Script},
};
use tollgate_admin::throttle::AttemptStore;

/// Counts one attempt; the window starts with the first and is never left without an end.
const COUNT: &str = r"
local n = redis.call('INCR', KEYS[1])
local left = redis.call('PTTL', KEYS[1])
if left < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  left = tonumber(ARGV[1])
end
return {n, left}
";

/// Takes one attempt back, never below zero.
const UNCOUNT: &str = r"
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n > 0 then redis.call('DECR', KEYS[1]) end
return 1
";

pub struct RedisAttempts {
    client: Client,
    prefix: String,
    count: Script,
    uncount: Script,
}

impl RedisAttempts {
    pub fn new(client: Client, prefix: &str) -> Self {
        RedisAttempts {
            client,
            prefix: prefix.to_string(),
            count: Script::from_lua(COUNT),
            uncount: Script::from_lua(UNCOUNT),
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}:{key}", self.prefix)
    }
}

#[async_trait]
impl AttemptStore for RedisAttempts {
    async fn count(&self, key: &str, window: Duration) -> Result<(u64, Duration), String> {
        let reply: Value = self
            .count
            .evalsha_with_reload(
                &self.client,
                vec![self.key(key)],
                vec![window.as_millis().to_string()],
            )
            .await
            .map_err(|e| e.to_string())?;
        let numbers: Vec<i64> = reply
            .into_array()
            .iter()
            .filter_map(Value::as_i64)
            .collect();
        match numbers[..] {
            [n, left] => Ok((
                u64::try_from(n).unwrap_or(0),
                Duration::from_millis(u64::try_from(left).unwrap_or(0)),
            )),
            _ => Err("the login attempt count answered something else".into()),
        }
    }

    async fn uncount(&self, key: &str) -> Result<(), String> {
        let _: Value = self
            .uncount
            .evalsha_with_reload(&self.client, vec![self.key(key)], Vec::<String>::new())
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}

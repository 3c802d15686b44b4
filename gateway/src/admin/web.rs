//! The web admin's view of the admin API's state: what `shoal-webadmin` asks of the
//! gateway beside the API's routes ([`shoal_webadmin::Backend`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use crate::admin::AdminState;

impl shoal_webadmin::Backend for AdminState {
    fn role_of(&self, user: &str) -> Option<shoal_common::roles::Role> {
        self.users.role_of(user)
    }

    fn client_ip(&self, headers: &http::HeaderMap, peer: Option<IpAddr>) -> IpAddr {
        self.client_ip_of(headers, peer)
    }

    fn login(
        &self,
        authorization: String,
        addr: IpAddr,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = shoal_webadmin::Login> + Send + '_>>
    {
        Box::pin(async move {
            match self
                .users
                .authenticate(&self.verifier, Some(&authorization), addr)
                .await
            {
                Ok(p) => shoal_webadmin::Login::Valid(p),
                Err(crate::auth::Verdict::Throttled(_) | crate::auth::Verdict::Busy) => {
                    shoal_webadmin::Login::Throttled
                }
                Err(_) => shoal_webadmin::Login::Invalid,
            }
        })
    }

    fn body_read_timeout(&self) -> Duration {
        self.body_read_timeout
    }

    fn executor_load(&self) -> HashMap<String, (usize, bool)> {
        self.router.load()
    }
}

-- The other servers told of a local user's device-list changes (`m.device_list_update`):
-- those that asked for the user's keys over federation. At most MAX_REMOTE_FOLLOWERS
-- (server/src/store/device_plane.rs) per user.
CREATE TABLE remote_followers (
    user_id text COLLATE "C" NOT NULL,
    server_name text COLLATE "C" NOT NULL,
    PRIMARY KEY (user_id, server_name)
);

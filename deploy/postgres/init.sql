-- The event store and the read models live in databases of their own.
CREATE DATABASE douyin;
CREATE DATABASE douyin_read;

"""matrix-nio, the stock Python client, manages an account: register, log in, profile, account data,
devices, logout. Everything is done and checked through nio's own request and response classes, so a
response nio cannot parse fails the test just as it would break a nio bot."""

from __future__ import annotations

import nio
import pytest

from tests.interop.nio_support import PASSWORD, expect, nio_client, raw_json, register_user, user_path

pytestmark = pytest.mark.interop


async def test_nio_registers_a_user_and_is_logged_in_as_them(homeserver_url):
    async with nio_client(homeserver_url) as alice:
        registered = await register_user(alice, "alice")
        assert registered.user_id.startswith("@alice-")
        assert registered.access_token and registered.device_id
        assert (alice.user_id, alice.access_token) == (registered.user_id, registered.access_token)

        whoami = expect(await alice.whoami(), nio.WhoamiResponse, "whoami")
        assert (whoami.user_id, whoami.device_id, whoami.is_guest) == (
            registered.user_id, registered.device_id, False,
        )


async def test_nio_logs_in_with_the_password_on_a_second_device(homeserver_url):
    async with nio_client(homeserver_url) as first, nio_client(homeserver_url) as second:
        registered = await register_user(first, "alice")
        second.user = registered.user_id
        login = expect(await second.login(PASSWORD, device_name="laptop"), nio.LoginResponse, "login")

        assert login.user_id == registered.user_id
        assert login.device_id != registered.device_id
        assert login.access_token != registered.access_token
        whoami = expect(await second.whoami(), nio.WhoamiResponse, "whoami on the second device")
        assert whoami.device_id == login.device_id


async def test_nio_refuses_a_wrong_password_with_m_forbidden(homeserver_url):
    async with nio_client(homeserver_url) as first, nio_client(homeserver_url) as second:
        registered = await register_user(first, "alice")
        second.user = registered.user_id
        failed = expect(await second.login("not the password"), nio.LoginError, "login with a wrong password")
        assert failed.status_code == "M_FORBIDDEN"
        assert not second.access_token


async def test_nio_sets_a_display_name_and_avatar_that_another_user_sees(homeserver_url):
    async with nio_client(homeserver_url) as alice, nio_client(homeserver_url) as bob:
        me = await register_user(alice, "alice")
        await register_user(bob, "bob")
        avatar = "mxc://example.org/AvatarOfAlice"

        expect(await alice.set_displayname("Alice in Wonderland"), nio.ProfileSetDisplayNameResponse,
               "set display name")
        expect(await alice.set_avatar(avatar), nio.ProfileSetAvatarResponse, "set avatar")

        name = expect(await bob.get_displayname(me.user_id), nio.ProfileGetDisplayNameResponse, "get name")
        assert name.displayname == "Alice in Wonderland"
        picture = expect(await bob.get_avatar(me.user_id), nio.ProfileGetAvatarResponse, "get avatar")
        assert picture.avatar_url == avatar
        profile = expect(await bob.get_profile(me.user_id), nio.ProfileGetResponse, "get profile")
        assert (profile.displayname, profile.avatar_url) == ("Alice in Wonderland", avatar)


async def test_nio_reads_back_the_m_direct_account_data_it_stored(homeserver_url):
    async with nio_client(homeserver_url) as alice:
        me = await register_user(alice, "alice")
        # nio has no setter for account data, so it goes over nio's own session; nio then reads
        # m.direct back through its own parser (list_direct_rooms).
        direct = {"@bob:example.org": ["!dm:example.org"]}
        status, body = await raw_json(alice, "PUT", user_path(me.user_id, "account_data", "m.direct"), direct)
        assert (status, body) == (200, {})

        rooms = expect(await alice.list_direct_rooms(), nio.DirectRoomsResponse, "list direct rooms")
        assert rooms.rooms == direct


async def test_nio_client_settings_survive_in_custom_account_data(homeserver_url):
    async with nio_client(homeserver_url) as alice:
        me = await register_user(alice, "alice")
        path = user_path(me.user_id, "account_data", "org.huiskamer.settings")
        settings = {"theme": "dark", "language": "nl", "nested": {"sound": False}}

        status, _ = await raw_json(alice, "GET", path)
        assert status == 404
        assert await raw_json(alice, "PUT", path, settings) == (200, {})
        assert await raw_json(alice, "GET", path) == (200, settings)
        assert await raw_json(alice, "PUT", path, {"theme": "light"}) == (200, {})
        assert await raw_json(alice, "GET", path) == (200, {"theme": "light"})


async def test_nio_lists_renames_and_deletes_devices(homeserver_url):
    async with nio_client(homeserver_url) as phone, nio_client(homeserver_url) as laptop:
        me = await register_user(phone, "alice")
        laptop.user = me.user_id
        login = expect(await laptop.login(PASSWORD, device_name="laptop"), nio.LoginResponse, "login")

        listed = expect(await phone.devices(), nio.DevicesResponse, "list devices")
        assert {device.id for device in listed.devices} == {me.device_id, login.device_id}

        expect(await phone.update_device(login.device_id, {"display_name": "old laptop"}),
               nio.UpdateDeviceResponse, "rename device")
        listed = expect(await laptop.devices(), nio.DevicesResponse, "list devices again")
        assert {d.id: d.display_name for d in listed.devices}[login.device_id] == "old laptop"

        # Deleting a device is user-interactive: nio first learns the session and flows.
        challenge = expect(await phone.delete_devices([login.device_id]), nio.DeleteDevicesAuthResponse,
                           "delete device without auth")
        assert any(flow.get("stages") == ["m.login.password"] for flow in challenge.flows)
        auth = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": me.user_id},
            "password": PASSWORD,
            "session": challenge.session,
        }
        expect(await phone.delete_devices([login.device_id], auth), nio.DeleteDevicesResponse,
               "delete device with password")

        listed = expect(await phone.devices(), nio.DevicesResponse, "list devices after delete")
        assert [device.id for device in listed.devices] == [me.device_id]
        revoked = expect(await laptop.whoami(), nio.WhoamiError, "whoami with a deleted device's token")
        assert revoked.status_code == "M_UNKNOWN_TOKEN"


async def test_nio_logout_revokes_only_the_token_of_that_device(homeserver_url):
    async with nio_client(homeserver_url) as phone, nio_client(homeserver_url) as laptop:
        me = await register_user(phone, "alice")
        laptop.user = me.user_id
        login = expect(await laptop.login(PASSWORD, device_name="laptop"), nio.LoginResponse, "login")

        expect(await laptop.logout(), nio.LogoutResponse, "logout")
        assert laptop.access_token == ""

        laptop.access_token = login.access_token
        revoked = expect(await laptop.whoami(), nio.WhoamiError, "whoami with a logged-out token")
        assert revoked.status_code == "M_UNKNOWN_TOKEN"
        still = expect(await phone.whoami(), nio.WhoamiResponse, "whoami on the device still logged in")
        assert still.device_id == me.device_id
        listed = expect(await phone.devices(), nio.DevicesResponse, "list devices after logout")
        assert [device.id for device in listed.devices] == [me.device_id]

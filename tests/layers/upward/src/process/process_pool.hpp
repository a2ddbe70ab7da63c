#pragma once
// Fixture.
